//! The simulated Connect's state and every state transition.
//!
//! Transitions live on [`Printer`] and are the only code that appends feed events, so the feed
//! always tells what happened to the printer, whoever (test script, scenario, HTTP command)
//! made it happen.

mod clock;
mod context;
mod job;
mod printer;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

pub(crate) use clock::{real_now_us, secs};
pub(crate) use context::{Cause, Ctx, Notice};
pub(crate) use job::{Job, NewJob, PlannedJob};
pub(crate) use printer::{Axes, Camera, Printer, Temps};

use crate::faults::{Fault, FaultRule};
use crate::options::PrinterSpec;
use crate::recorded::RecordedRequest;
use crate::scenario::Autopilot;
use context::bump;

pub(crate) const MAX_RECORDED_REQUESTS: usize = 100_000;
const FIRST_CAMERA_ID: i64 = 1_001;

pub(crate) struct World {
    pub printers: Vec<Printer>,
    pub ctx: Ctx,
    pub cameras: Vec<Camera>,
    /// Oldest first, capped at [`MAX_RECORDED_REQUESTS`].
    pub requests: VecDeque<RecordedRequest>,
    pub token: Option<String>,
    /// Connect's fault rules, tried in order (see `Simulator::add_fault`).
    pub faults: Vec<FaultRule>,
    pub started_us: i64,
    /// For the `at` of recorded requests.
    pub started: Instant,
    /// Seconds of simulated time `step` has advanced.
    pub sim_time: f64,
    next_printer_number: u64,
    next_camera_id: i64,
    next_request_seq: u64,
}

impl World {
    pub fn new(token: Option<String>) -> World {
        World {
            printers: Vec::new(),
            ctx: Ctx::new(),
            cameras: Vec::new(),
            requests: VecDeque::new(),
            token,
            faults: Vec::new(),
            started_us: real_now_us(),
            started: Instant::now(),
            sim_time: 0.0,
            next_printer_number: 1,
            next_camera_id: FIRST_CAMERA_ID,
            next_request_seq: 0,
        }
    }

    pub fn printer(&self, uuid: &str) -> Option<&Printer> {
        self.printers.iter().find(|p| p.uuid == uuid)
    }

    pub fn printer_mut(&mut self, uuid: &str) -> Option<&mut Printer> {
        self.printers.iter_mut().find(|p| p.uuid == uuid)
    }

    /// The printer and the context its transitions need, borrowed together.
    pub fn printer_ctx(&mut self, uuid: &str) -> Option<(&mut Printer, &mut Ctx)> {
        let World { printers, ctx, .. } = self;
        let printer = printers.iter_mut().find(|p| p.uuid == uuid)?;
        Some((printer, ctx))
    }

    /// Adds a printer (manual when `pilot` is `None`) and returns its uuid. The very first
    /// printer gets a camera.
    pub fn add_printer(
        &mut self,
        spec: PrinterSpec,
        pilot: Option<Autopilot>,
    ) -> Result<String, String> {
        let mut number = self.next_printer_number;
        let uuid = match spec.uuid.clone() {
            Some(uuid) if self.printer(&uuid).is_some() => {
                return Err(format!("a printer with uuid {uuid} already exists"));
            }
            Some(uuid) if uuid.trim().is_empty() => return Err("empty uuid".to_string()),
            Some(uuid) => uuid,
            None => loop {
                let uuid = format!("00000000-0000-4000-8000-{number:012}");
                if self.printer(&uuid).is_none() {
                    break uuid;
                }
                number += 1;
            },
        };
        self.next_printer_number = number + 1;
        let now = self.ctx.clock.tick();
        let mut printer = Printer::new(number, uuid.clone(), spec, now);
        printer.pilot = pilot;
        let first = number == 1;
        self.printers.push(printer);
        if first {
            self.add_camera(&uuid);
        }
        Ok(uuid)
    }

    pub fn remove_printer(&mut self, uuid: &str) -> bool {
        let before = self.printers.len();
        self.printers.retain(|p| p.uuid != uuid);
        self.cameras.retain(|c| c.printer_uuid != uuid);
        self.printers.len() != before
    }

    pub fn add_camera(&mut self, uuid: &str) -> Option<i64> {
        self.printer(uuid)?;
        let id = bump(&mut self.next_camera_id);
        let name = if self.cameras.iter().any(|c| c.printer_uuid == uuid) {
            format!("Camera {id}")
        } else {
            "Buddy3D Camera".to_string()
        };
        self.cameras.push(Camera {
            id,
            printer_uuid: uuid.to_string(),
            name,
            min_bytes: 0,
        });
        Some(id)
    }

    /// The fault for a request to `path` under `/app/`, counting down the rule that gives it.
    pub fn take_fault(&mut self, path: &str) -> Option<Fault> {
        let fault = self
            .faults
            .iter_mut()
            .find_map(|r| r.hit(path).then(|| r.fault.clone()))?;
        self.faults.retain(|r| r.remaining != Some(0));
        Some(fault)
    }

    /// Records a request; returns its `seq` for [`World::answered`].
    pub fn record(&mut self, mut request: RecordedRequest) -> u64 {
        self.next_request_seq += 1;
        request.seq = self.next_request_seq;
        let seq = request.seq;
        self.requests.push_back(request);
        while self.requests.len() > MAX_RECORDED_REQUESTS {
            self.requests.pop_front();
        }
        seq
    }

    /// Notes how a recorded request was answered.
    pub fn answered(&mut self, seq: u64, status: u16, took: Duration) {
        if let Some(r) = self.requests.iter_mut().rev().find(|r| r.seq == seq) {
            r.status = Some(status);
            r.took = Some(took);
        }
    }

    /// Advances simulated time: printers with an autopilot run their script, every printer's
    /// heaters and chamber follow their targets.
    pub fn step(&mut self, dt: f64) {
        if !dt.is_finite() || dt <= 0.0 {
            return;
        }
        self.sim_time += dt;
        let now = self.sim_time;
        let World { printers, ctx, .. } = self;
        for printer in printers.iter_mut() {
            if let Some(mut pilot) = printer.pilot.take() {
                pilot.step(printer, ctx, now, dt);
                printer.pilot = Some(pilot);
            }
            printer.advance(dt);
        }
    }
}
