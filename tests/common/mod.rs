pub mod broker;
pub mod gateway;
