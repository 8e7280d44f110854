//! The handle tests, `demo` and `simulate` hold: [`Simulator`], its server, and the ticker
//! that lets scenario printers run. What it scripts is in the files under `simulator/`, one
//! per part of the simulated Connect.

mod account_server;
mod live_channel;
mod printers;
mod server;

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::options::SimOptions;
use crate::world::{self, World};
use crate::{account, http, live, scenario};

/// A cheap, cloneable handle to one simulated Connect.
#[derive(Clone)]
pub struct Simulator {
    pub(crate) world: Arc<Mutex<World>>,
    pub(crate) account: Arc<Mutex<account::Accounts>>,
    pub(crate) live: Arc<live::Hub>,
}

impl Simulator {
    pub fn new(opts: SimOptions) -> Simulator {
        let mut world = World::new(opts.token);
        scenario::populate(&mut world, opts.scenario);
        Simulator {
            world: Arc::new(Mutex::new(world)),
            account: Arc::default(),
            live: Arc::default(),
        }
    }

    /// Serve until `shutdown` resolves. The caller binds the listener (tests use 127.0.0.1:0).
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "simulated Prusa Connect listening");
        }
        use axum::serve::ListenerExt;
        // Without TCP_NODELAY small answers wait for the peer's delayed ACK (~40 ms).
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, http::router(self))
            .with_graceful_shutdown(shutdown)
            .await
    }

    /// Locks the world. A panic elsewhere while it was locked leaves it usable: every
    /// transition keeps it consistent step by step, and a test double must not cascade panics.
    pub(crate) fn world(&self) -> MutexGuard<'_, World> {
        self.world
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Locks the account server's state; poisoning is ignored as for [`Simulator::world`].
    pub(crate) fn account(&self) -> MutexGuard<'_, account::Accounts> {
        self.account
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Advances simulated time by `dt`: scenario printers run their script. Of the printers
    /// added with [`Simulator::add_printer`] only what commands started moves (heaters
    /// toward the targets SET_NOZZLE_TEMPERATURE and SET_HEATBED_TEMPERATURE set) and the
    /// chamber of a CORE One (warmer while printing).
    pub fn step(&self, dt: Duration) {
        self.world().step(dt.as_secs_f64());
    }

    /// Runs `f` on the printer, or gives `None` when there is no such printer.
    pub(crate) fn try_script<T>(
        &self,
        uuid: &str,
        f: impl FnOnce(&mut world::Printer, &mut world::Ctx) -> T,
    ) -> Option<T> {
        let mut world = self.world();
        let (printer, ctx) = world.printer_ctx(uuid)?;
        Some(f(printer, ctx))
    }

    #[track_caller]
    fn script<T>(
        &self,
        uuid: &str,
        f: impl FnOnce(&mut world::Printer, &mut world::Ctx) -> T,
    ) -> T {
        match self.try_script(uuid, f) {
            Some(value) => value,
            None => panic!("simulator: no printer with uuid {uuid}"),
        }
    }
}

/// Calls `sim.step(dt)` every `dt` of real time until `shutdown` resolves.
pub async fn run_ticker(sim: Simulator, dt: Duration, shutdown: impl Future<Output = ()>) {
    // tokio's interval panics on a zero period.
    let period = dt.max(Duration::from_millis(1));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick completes at once; skip it so the world starts where `new` left it.
    ticker.tick().await;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = ticker.tick() => sim.step(dt),
        }
    }
}
