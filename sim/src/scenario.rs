//! Printers that run by themselves: the demo's scripted day and the farm.
//!
//! An [`Autopilot`] looks at its printer on every `step` and reacts to the state it finds,
//! so a user's command (pause, stop, set ready) or a test script can interrupt it at any
//! point and the cycle carries on from there.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use super::world::{Cause, Ctx, Job, NewJob, Printer, World};
use super::{PrinterSpec, Scenario};

/// Progress only starts once the nozzle is this close to its target.
const HEATED_WITHIN: f64 = 10.0;

pub(crate) fn populate(world: &mut World, scenario: Scenario) {
    match scenario {
        Scenario::Empty => {}
        Scenario::Demo => demo(world),
        Scenario::Farm { printers } => farm(world, printers, FARM_JOB_S),
        Scenario::FarmLongJobs { printers } => farm(world, printers, LONG_JOB_S),
    }
}

fn demo(world: &mut World) {
    let specs = [
        (PrinterSpec::named("Busy MK4"), DemoRole::Busy),
        (PrinterSpec::core_one("Core One"), DemoRole::CoreOne),
        (PrinterSpec::mini("MINI"), DemoRole::Mini),
    ];
    for (spec, role) in specs {
        let mut pilot = Autopilot::new(Script::Demo(role));
        with_new_printer(world, spec, |p, ctx| {
            p.material = role.material().to_string();
            match role {
                DemoRole::Busy => {
                    add_past_jobs(p, ctx);
                    // Mid-print from the start, so the demo shows a job at once.
                    pilot.start_next_job(p, ctx);
                    p.set_progress(30.0);
                    let (nozzle, bed) = material_temps(&p.material);
                    p.temps.nozzle = nozzle;
                    p.temps.bed = bed;
                }
                DemoRole::CoreOne => {}
                DemoRole::Mini => {
                    p.set_state(ctx, "READY", &Cause::CONNECT);
                }
            }
            p.pilot = Some(pilot);
        });
    }
}

/// How long a farm's jobs take, in simulated seconds: [`Scenario::Farm`]'s and
/// [`Scenario::FarmLongJobs`]'.
const FARM_JOB_S: (f64, f64) = (60.0, 300.0);
const LONG_JOB_S: (f64, f64) = (3600.0, 10_800.0);

fn farm(world: &mut World, count: usize, job_s: (f64, f64)) {
    for i in 0..count {
        let name = format!("Farm {:03}", i + 1);
        let spec = match i % 4 {
            0 | 2 => PrinterSpec::named(&name),
            1 => PrinterSpec::mini(&name),
            _ => PrinterSpec::core_one(&name),
        };
        let mut rng = StdRng::seed_from_u64(0x5eed_0000 + i as u64);
        let busy = rng.random_bool(0.6);
        let offline = !busy && rng.random_bool(0.08);
        let progress = rng.random_range(0.0..90.0);
        let mut pilot = Autopilot::new(Script::Farm(Box::new(FarmScript { rng, job_s })));
        with_new_printer(world, spec, |p, ctx| {
            if busy {
                pilot.start_next_job(p, ctx);
                p.set_progress(progress);
                let (nozzle, bed) = material_temps(&p.material);
                p.temps = super::world::Temps {
                    nozzle,
                    bed,
                    target_nozzle: nozzle,
                    target_bed: bed,
                };
            } else if offline {
                p.set_online(ctx, false);
            }
            p.pilot = Some(pilot);
        });
    }
}

fn with_new_printer(world: &mut World, spec: PrinterSpec, f: impl FnOnce(&mut Printer, &mut Ctx)) {
    let uuid = match world.add_printer(spec, None) {
        Ok(uuid) => uuid,
        Err(e) => {
            tracing::warn!("simulator scenario: cannot add printer: {e}");
            return;
        }
    };
    if let Some((printer, ctx)) = world.printer_ctx(&uuid) {
        f(printer, ctx);
    }
}

/// A couple of jobs from yesterday, so the job history is not empty.
fn add_past_jobs(p: &mut Printer, ctx: &mut Ctx) {
    let now = ctx.clock.tick();
    for (i, (file, state)) in [
        ("Shape-Cylinder_0.4n_0.2mm_PLA_MK4IS_45m.bgcode", "FIN_OK"),
        ("phone-stand_0.4n_0.2mm_PLA_MK4IS_2h.bgcode", "FIN_STOPPED"),
    ]
    .into_iter()
    .enumerate()
    {
        let started_us = now - 86_400_000_000 + i as i64 * 10_800_000_000;
        let duration_s = 2_700.0 + i as f64 * 4_500.0;
        let progress = if state == "FIN_OK" { 100.0 } else { 42.0 };
        let file = super::files::FileInfo::for_path(file, started_us / 1_000_000 - 600);
        p.jobs.push_back(Job {
            id: ctx.job_id(),
            state: state.to_string(),
            file,
            duration_s,
            progress,
            time_printing: (duration_s * progress / 100.0).round(),
            time_remaining: None,
            started_us,
            ended_us: Some(started_us + (duration_s * progress / 100.0 * 1e6) as i64),
            objects: Vec::new(),
            material: "PLA".to_string(),
            weight_g: 14.2 + i as f64 * 20.0,
            reason: None,
            mode: p.model.clone(),
            record_lags_until_us: None,
        });
    }
}

fn material_temps(material: &str) -> (f64, f64) {
    match material {
        "PETG" => (240.0, 85.0),
        "ASA" => (260.0, 105.0),
        _ => (215.0, 60.0),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DemoRole {
    /// Prints, finishes FIN_OK, is set ready, prints the next file.
    Busy,
    /// Prints, shows an error dialog, fails FIN_ERROR, goes back to IDLE, tries again.
    CoreOne,
    /// Prints, is paused at the printer for a while, resumes, finishes FIN_OK.
    Mini,
}

impl DemoRole {
    fn material(self) -> &'static str {
        match self {
            DemoRole::CoreOne => "PETG",
            DemoRole::Busy | DemoRole::Mini => "PLA",
        }
    }
}

#[derive(Debug)]
pub(crate) struct FarmScript {
    rng: StdRng,
    job_s: (f64, f64),
}

#[derive(Debug)]
enum Script {
    Demo(DemoRole),
    Farm(Box<FarmScript>),
}

/// The waits an autopilot makes, in simulated seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// FINISHED/ERROR/STOPPED until set ready or idle.
    Cooldown,
    /// IDLE/READY until the next job.
    Idle,
    Offline,
    AutoPause,
    Attention,
    /// Any other state, until the printer goes back to IDLE.
    Stray,
}

/// How one job will go.
#[derive(Debug, Clone, Default)]
struct JobPlan {
    job_id: i64,
    pause_at: Option<f64>,
    fail_at: Option<f64>,
    /// Show an error dialog (ATTENTION) before failing.
    attention: bool,
    stop_at: Option<f64>,
    height_mm: f64,
    paused: bool,
    auto_paused: bool,
    attention_shown: bool,
}

impl Script {
    fn delay(&mut self, wait: Wait) -> f64 {
        match self {
            Script::Demo(role) => match (wait, role) {
                (Wait::Cooldown, DemoRole::CoreOne) => 15.0,
                (Wait::Cooldown, _) => 10.0,
                (Wait::Idle, DemoRole::Busy) => 5.0,
                (Wait::Idle, DemoRole::CoreOne) => 8.0,
                (Wait::Idle, DemoRole::Mini) => 3.0,
                (Wait::AutoPause, _) => 15.0,
                (Wait::Attention, _) => 8.0,
                (Wait::Offline | Wait::Stray, _) => 10.0,
            },
            Script::Farm(farm) => {
                let range = match wait {
                    Wait::Cooldown => 10.0..60.0,
                    Wait::Idle => 10.0..120.0,
                    Wait::Offline => 30.0..180.0,
                    Wait::AutoPause => 10.0..40.0,
                    Wait::Attention => 10.0..30.0,
                    Wait::Stray => 5.0..20.0,
                };
                farm.rng.random_range(range)
            }
        }
    }

    /// The state a printer is put in after a job has ended and cooled down.
    fn after_cooldown(&mut self) -> &'static str {
        match self {
            Script::Demo(DemoRole::CoreOne) => "IDLE",
            Script::Demo(_) => "READY",
            Script::Farm(farm) => {
                if farm.rng.random_bool(0.5) {
                    "READY"
                } else {
                    "IDLE"
                }
            }
        }
    }

    fn goes_offline(&mut self) -> bool {
        match self {
            Script::Demo(_) => false,
            Script::Farm(farm) => farm.rng.random_bool(0.05),
        }
    }

    /// The `n`th job of this printer and how it will go.
    fn job(&mut self, n: u32) -> (NewJob, JobPlan) {
        match self {
            Script::Demo(role) => demo_job(*role, n),
            Script::Farm(farm) => farm_job(farm),
        }
    }
}

/// The `n`th job of a demo printer: its files in turn, each role with its own mishap.
fn demo_job(role: DemoRole, n: u32) -> (NewJob, JobPlan) {
    let files: &[(&str, f64, &[&str])] = match role {
        DemoRole::Busy => &[
            (
                "Shape-Box_0.4n_0.2mm_PLA_MK4IS_1m.bgcode",
                75.0,
                &["Box", "Lid"],
            ),
            (
                "corner-bracket_x2.bgcode",
                60.0,
                &["corner bracket 1", "corner bracket 2"],
            ),
            ("3DBenchy_0.4n_0.2mm_PLA_MK4IS.bgcode", 85.0, &["3DBenchy"]),
        ],
        DemoRole::CoreOne => &[
            ("Vase_0.6n_0.3mm_PETG_COREONE.bgcode", 60.0, &["Vase"]),
            (
                "gear-set_x4_0.4n_0.2mm_PETG_COREONE.bgcode",
                70.0,
                &["gear 1", "gear 2", "gear 3", "gear 4"],
            ),
        ],
        DemoRole::Mini => &[(
            "whistle_x3_0.4n_0.2mm_PLA_MINI.bgcode",
            50.0,
            &["whistle 1", "whistle 2", "whistle 3"],
        )],
    };
    let (file, duration, objects) = files[n as usize % files.len()];
    let job = NewJob::new(file, duration, objects);
    let plan = match role {
        DemoRole::Busy => JobPlan::default(),
        DemoRole::CoreOne => JobPlan {
            fail_at: Some(if n % 2 == 0 { 55.0 } else { 35.0 }),
            attention: true,
            ..JobPlan::default()
        },
        DemoRole::Mini => JobPlan {
            pause_at: Some(40.0),
            ..JobPlan::default()
        },
    };
    (
        job,
        JobPlan {
            height_mm: 30.0,
            ..plan
        },
    )
}

/// A farm printer's next job: a random file, and now and then a failure, a stop or a pause.
fn farm_job(farm: &mut FarmScript) -> (NewJob, JobPlan) {
    const FILES: &[(&str, &str, &[&str])] = &[
        (
            "hook_x6_0.4n_0.2mm_PLA.bgcode",
            "PLA",
            &["hook 1", "hook 2", "hook 3", "hook 4", "hook 5", "hook 6"],
        ),
        ("cable-clip_x10_0.4n_0.2mm_PETG.bgcode", "PETG", &["clips"]),
        ("enclosure-lid_0.4n_0.2mm_ASA.bgcode", "ASA", &["lid"]),
        (
            "spool-holder_0.4n_0.3mm_PLA.bgcode",
            "PLA",
            &["arm", "base"],
        ),
        (
            "gridfinity-bin_2x3_0.4n_0.2mm_PETG.bgcode",
            "PETG",
            &["bin"],
        ),
    ];
    let rng = &mut farm.rng;
    let (file, material, objects) = FILES[rng.random_range(0..FILES.len())];
    let mut job = NewJob::new(file, rng.random_range(farm.job_s.0..farm.job_s.1), objects);
    job.material = Some(material.to_string());
    let roll = rng.random_range(0.0..1.0);
    let mut plan = JobPlan {
        height_mm: rng.random_range(5.0..80.0),
        ..JobPlan::default()
    };
    if roll < 0.08 {
        plan.fail_at = Some(rng.random_range(5.0..95.0));
        plan.attention = rng.random_bool(0.5);
    } else if roll < 0.14 {
        plan.stop_at = Some(rng.random_range(5.0..95.0));
    } else if roll < 0.24 {
        plan.pause_at = Some(rng.random_range(5.0..95.0));
    }
    (job, plan)
}

/// Drives one scenario printer.
#[derive(Debug)]
pub(crate) struct Autopilot {
    script: Script,
    /// When the current wait ends, in simulated seconds.
    deadline: Option<f64>,
    /// The effective state seen on the last step: a change resets the wait.
    last_seen: String,
    plan: JobPlan,
    jobs_started: u32,
}

impl Autopilot {
    fn new(script: Script) -> Autopilot {
        Autopilot {
            script,
            deadline: None,
            last_seen: String::new(),
            plan: JobPlan::default(),
            jobs_started: 0,
        }
    }

    /// True once `wait` has lasted its time since it began (on the first call).
    fn waited(&mut self, now: f64, wait: Wait) -> bool {
        match self.deadline {
            None => {
                self.deadline = Some(now + self.script.delay(wait));
                false
            }
            Some(deadline) if now >= deadline => {
                self.deadline = None;
                true
            }
            Some(_) => false,
        }
    }

    fn start_next_job(&mut self, p: &mut Printer, ctx: &mut Ctx) {
        let (job, plan) = self.script.job(self.jobs_started);
        self.jobs_started += 1;
        if let Some(material) = &job.material {
            p.material = material.clone();
        }
        let id = p.start_job(ctx, job, &Cause::CONNECT);
        self.plan = JobPlan { job_id: id, ..plan };
    }

    pub(crate) fn step(&mut self, p: &mut Printer, ctx: &mut Ctx, now: f64, dt: f64) {
        let seen = p.effective_state().to_string();
        if seen != self.last_seen {
            self.deadline = None;
            if seen != "PAUSED" {
                self.plan.auto_paused = false;
            }
            self.last_seen = seen;
        }
        adjust_temperatures(p, now, dt);
        if !p.online {
            // Only the farm takes printers offline, but every autopilot brings them back.
            if matches!(self.script, Script::Farm(_)) && self.waited(now, Wait::Offline) {
                p.set_online(ctx, true);
            }
            return;
        }
        match p.state.as_str() {
            "PRINTING" => self.print(p, ctx, now, dt),
            "PAUSED" => {
                if self.plan.auto_paused && self.waited(now, Wait::AutoPause) {
                    p.set_state(ctx, "PRINTING", &Cause::source("GUI"));
                }
            }
            "ATTENTION" => {
                // A dialog somebody else raised stays until they clear it.
                if self.plan.attention_shown
                    && p.active_job().is_some_and(|j| j.id == self.plan.job_id)
                    && self.waited(now, Wait::Attention)
                {
                    p.finish_job(ctx, "FIN_ERROR", &Cause::FIRMWARE);
                    p.state_reason = Some("Heatbreak thermistor disconnected".to_string());
                }
            }
            "FINISHED" | "ERROR" | "STOPPED" => {
                if self.waited(now, Wait::Cooldown) {
                    let next = self.script.after_cooldown();
                    p.set_state(ctx, next, &Cause::CONNECT);
                }
            }
            "IDLE" | "READY" => {
                if self.waited(now, Wait::Idle) {
                    if self.script.goes_offline() {
                        p.set_online(ctx, false);
                    } else {
                        self.start_next_job(p, ctx);
                    }
                }
            }
            _ => {
                if self.waited(now, Wait::Stray) {
                    p.set_state(ctx, "IDLE", &Cause::FIRMWARE);
                }
            }
        }
    }

    fn print(&mut self, p: &mut Printer, ctx: &mut Ctx, now: f64, dt: f64) {
        let speed = p.speed.clamp(10, 300) as f64 / 100.0;
        let target = p.temps.target_nozzle;
        let heated = p.temps.nozzle >= target - HEATED_WITHIN;
        let Some(job) = p.active_job_mut() else {
            // PRINTING without a job (a script said so): give up after a while.
            if self.waited(now, Wait::Stray) {
                p.set_state(ctx, "IDLE", &Cause::FIRMWARE);
            }
            return;
        };
        if job.id != self.plan.job_id {
            // Started by somebody else (START_PRINT): it simply prints to the end.
            self.plan = JobPlan {
                job_id: job.id,
                height_mm: 20.0,
                ..JobPlan::default()
            };
        }
        job.time_printing += dt;
        if !heated && job.progress == 0.0 {
            job.time_remaining = None;
            return;
        }
        job.progress = (job.progress + dt / job.duration_s * 100.0 * speed).min(100.0);
        job.time_remaining = Some(((100.0 - job.progress) / 100.0 * job.duration_s / speed).ceil());
        let progress = job.progress;
        p.axes.z = 0.2 + progress / 100.0 * self.plan.height_mm;
        p.axes.x = 125.0 + 80.0 * (now * 0.7).sin();
        p.axes.y = 105.0 + 70.0 * (now * 0.5).cos();

        let plan = &mut self.plan;
        if plan.pause_at.is_some_and(|at| progress >= at) && !plan.paused {
            plan.paused = true;
            plan.auto_paused = true;
            p.set_state(ctx, "PAUSED", &Cause::source("GUI"));
        } else if plan.fail_at.is_some_and(|at| progress >= at) && !plan.attention_shown {
            if plan.attention {
                plan.attention_shown = true;
                let dialog = json!({
                    "code": "17529",
                    "title": "HEATBREAK THERMISTOR DISCONNECTED",
                    "text": "Heatbreak thermistor is disconnected. Check the wiring.",
                    "buttons": ["Ok"],
                    "key": "HEATBREAK_THERMISTOR_DISCONNECTED",
                });
                p.set_dialog(ctx, Some(dialog), &Cause::FIRMWARE);
            } else {
                plan.attention_shown = true;
                p.finish_job(ctx, "FIN_ERROR", &Cause::FIRMWARE);
            }
        } else if plan.stop_at.is_some_and(|at| progress >= at) {
            p.finish_job(ctx, "FIN_STOPPED", &Cause::source("GUI"));
        } else if progress >= 100.0 {
            p.finish_job(ctx, "FIN_OK", &Cause::FIRMWARE);
            p.axes = super::world::Axes {
                x: 245.0,
                y: 0.0,
                z: (p.axes.z + 20.0).min(210.0),
            };
        }
    }
}

/// Heaters follow the job: material temperatures while a job runs, off otherwise, with a
/// little noise while printing.
fn adjust_temperatures(p: &mut Printer, now: f64, dt: f64) {
    let running = p.active_job().is_some() && p.online;
    let (nozzle, bed) = if running {
        material_temps(&p.material)
    } else {
        (0.0, 0.0)
    };
    p.temps.target_nozzle = nozzle;
    p.temps.target_bed = bed;
    p.temps.follow_targets(dt);
    if running && (p.temps.nozzle - nozzle).abs() < 1.0 {
        p.temps.nozzle = nozzle + 0.6 * (now * 1.3).sin();
    }
}
