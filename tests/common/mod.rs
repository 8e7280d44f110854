pub mod blocking;
pub mod broker;
pub mod fake_http;
pub mod gate;
pub mod gateway;
pub mod logs;
pub mod process;
pub mod webdriver;
