//! CPU time of the processes under test, read from `/proc`: what a window of load cost each of
//! them. PostgreSQL is every process named `postgres` (the server and its backends, with the
//! time of backends that exited, which the kernel adds to their parent). The load generator's
//! own time is read too and reported apart: it is not the system's cost. So is the time a
//! JVM's compiler threads took (the broker's): it is part of its process's time, and a one-time
//! cost of a JVM that has not yet compiled its hot code, which a broker that has run for a
//! while no longer pays.

use std::collections::BTreeMap;

use serde::Serialize;

/// The name under which the load generator's own CPU time is reported.
pub const LOADGEN: &str = "loadgen";
/// The name under which every PostgreSQL process's CPU time is reported together.
pub const POSTGRES: &str = "postgres";

/// What a process's JIT compiler threads took is reported under the process's name with this
/// after it: part of the process's time, so never added to the total again.
pub const JIT: &str = "-jit";

/// How reports name a process, or a part of one (a JVM's JIT compiler).
pub fn part_name(name: &str) -> String {
    match name.strip_suffix(JIT) {
        Some(jvm) => format!("{jvm}'s JIT compiler (part of {jvm})"),
        None => name.to_owned(),
    }
}

/// Whether `name` is a process of the system, whose time counts in the total.
pub fn counts_in_total(name: &str) -> bool {
    name != LOADGEN && !name.ends_with(JIT)
}

/// The processes whose CPU time is read: each named, by pid.
#[derive(Debug, Clone, Default)]
pub struct Processes(pub Vec<(String, u32)>);

/// CPU time used so far by each process, in milliseconds.
#[derive(Debug, Clone)]
pub struct Reading {
    used: BTreeMap<String, f64>,
    /// Per JVM process, the time of each of its JIT compiler threads, by thread id: HotSpot
    /// starts and stops them as the work asks, so a window counts each thread's own difference.
    compilers: BTreeMap<String, BTreeMap<u32, f64>>,
}

impl Processes {
    /// Reads every process's CPU time now, PostgreSQL's and the load generator's included.
    pub fn read(&self) -> Reading {
        let mut used: BTreeMap<String, f64> = self.0.iter().map(|(name, pid)| (name.clone(), process_cpu_ms(*pid, false))).collect();
        used.insert(POSTGRES.to_owned(), postgres_cpu_ms());
        used.insert(LOADGEN.to_owned(), process_cpu_ms(std::process::id(), false));
        let compilers = self.0.iter().filter_map(|(name, pid)| Some((name.clone(), jit_compiler_threads(*pid)?))).collect();
        Reading { used, compilers }
    }
}

/// What a window cost: CPU per process, as milliseconds per unit of work and as cores.
#[derive(Debug, Clone, Serialize)]
pub struct Cost {
    pub seconds: f64,
    /// The units of work done in the window (accepted submissions, requests): 0 for an idle
    /// window, which then has no cost per unit.
    pub units: u64,
    /// CPU milliseconds per unit, per process (the load generator's too).
    pub ms_per_unit: BTreeMap<String, f64>,
    /// CPU milliseconds per unit, all the system's processes (the load generator's not).
    pub ms_per_unit_total: f64,
    /// Share of a core used over the window, per process.
    pub cores: BTreeMap<String, f64>,
    /// Share of a core used over the window, all the system's processes.
    pub cores_total: f64,
}

impl Reading {
    /// The cost of the window from `before` to this reading, `seconds` long, in which `units`
    /// of work were done.
    pub fn since(&self, before: &Reading, seconds: f64, units: u64) -> Cost {
        let mut used: BTreeMap<String, f64> =
            self.used.iter().map(|(name, &now)| (name.clone(), (now - before.used.get(name).copied().unwrap_or(now)).max(0.0))).collect();
        for (name, threads) in &self.compilers {
            // A thread started within the window counts from 0; one that ended in it is lost
            // with what it did there, so this is at most what compiling took.
            let earlier = before.compilers.get(name);
            let compiling = threads.iter().map(|(tid, &now)| (now - earlier.and_then(|t| t.get(tid)).copied().unwrap_or(0.0)).max(0.0)).sum();
            used.insert(format!("{name}{JIT}"), compiling);
        }
        let system: f64 = used.iter().filter(|(name, _)| counts_in_total(name)).map(|(_, &ms)| ms).sum();
        let per_unit = |ms: f64| if units == 0 { 0.0 } else { ms / units as f64 };
        let cores = |ms: f64| ms / 1000.0 / seconds.max(f64::EPSILON);
        Cost {
            seconds,
            units,
            ms_per_unit: used.iter().map(|(name, &ms)| (name.clone(), per_unit(ms))).collect(),
            ms_per_unit_total: per_unit(system),
            cores: used.iter().map(|(name, &ms)| (name.clone(), cores(ms))).collect(),
            cores_total: cores(system),
        }
    }
}

/// Every `postgres` process's CPU time, with that of its exited children.
fn postgres_cpu_ms() -> f64 {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim() == POSTGRES))
        .map(|pid| process_cpu_ms(pid, true))
        .sum()
}

/// User and system CPU time of process `pid` (threads included), in milliseconds; with
/// `with_children`, also that of the children it has waited for.
fn process_cpu_ms(pid: u32, with_children: bool) -> f64 {
    stat_cpu_ms(&format!("/proc/{pid}/stat"), with_children)
}

/// The CPU time a `stat` file of `/proc` (a process's or a thread's) gives, in milliseconds.
fn stat_cpu_ms(path: &str, with_children: bool) -> f64 {
    let Ok(stat) = std::fs::read_to_string(path) else { return 0.0 };
    // The fields after the command name, which is in parentheses and may hold spaces.
    let Some((_, fields)) = stat.rsplit_once(')') else { return 0.0 };
    let fields: Vec<&str> = fields.split_whitespace().collect();
    // utime, stime, cutime and cstime are fields 14 to 17 of the line: 11 to 14 counting from
    // the state.
    let wanted: &[usize] = if with_children { &[11, 12, 13, 14] } else { &[11, 12] };
    let ticks: f64 = wanted.iter().filter_map(|&i| fields.get(i)?.parse::<f64>().ok()).sum();
    ticks * 1000.0 / CLOCK_TICKS_PER_SECOND
}

/// CPU time of each JIT compiler thread of process `pid` (HotSpot's `C1 CompilerThreadN` and
/// `C2 CompilerThreadN`, which the kernel's 15-character thread names cut to `C2 CompilerThre`),
/// in milliseconds, by thread id; `None` for a process without any (not a JVM).
fn jit_compiler_threads(pid: u32) -> Option<BTreeMap<u32, f64>> {
    let threads = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let compilers: BTreeMap<u32, f64> = threads
        .flatten()
        .filter_map(|thread| thread.file_name().to_str()?.parse::<u32>().ok())
        .filter(|tid| {
            std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
                .is_ok_and(|comm| comm.starts_with("C1 Compiler") || comm.starts_with("C2 Compiler"))
        })
        .map(|tid| (tid, thread_cpu_ms(pid, tid)))
        .collect();
    (!compilers.is_empty()).then_some(compilers)
}

/// User and system CPU time of thread `tid` of process `pid`, in milliseconds.
fn thread_cpu_ms(pid: u32, tid: u32) -> f64 {
    stat_cpu_ms(&format!("/proc/{pid}/task/{tid}/stat"), false)
}

/// `sysconf(_SC_CLK_TCK)`: 100 on every Linux this runs on.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_process_costs_what_it_spent_per_unit_and_as_cores() {
        let processes = Processes(vec![("me".to_owned(), std::process::id())]);
        let before = processes.read();
        let started = std::time::Instant::now();
        // Spin until the kernel has counted 200 ms of this process's CPU (20 ticks).
        let cost = loop {
            let spun = (0..1_000_000u64).fold(0u64, |sum, n| std::hint::black_box(sum.wrapping_add(n)));
            std::hint::black_box(spun);
            let cost = processes.read().since(&before, started.elapsed().as_secs_f64(), 10);
            if cost.ms_per_unit["me"] >= 20.0 {
                break cost;
            }
        };
        // Read a moment apart: at most a tick (10 ms, over 10 units) between them.
        assert!((cost.ms_per_unit["me"] - cost.ms_per_unit[LOADGEN]).abs() <= 1.0, "the load generator is this process too: {cost:?}");
        assert!(cost.cores["me"] > 0.0 && cost.cores["me"] <= 1.1, "one thread uses at most a core: {cost:?}");
        assert!(cost.ms_per_unit_total >= 20.0, "the system's processes include it: {cost:?}");
    }

    #[test]
    fn a_jvms_compiling_is_shown_apart_and_counted_once_in_the_total() {
        let reading = |broker: f64, compilers: &[(u32, f64)]| Reading {
            used: [("broker".to_owned(), broker), (LOADGEN.to_owned(), broker)].into(),
            compilers: [("broker".to_owned(), compilers.iter().copied().collect())].into(),
        };
        // Thread 1 compiled 300 ms in the window, thread 2 ended in it, thread 3 started in it.
        let cost = reading(1_100.0, &[(1, 350.0), (3, 100.0)]).since(&reading(100.0, &[(1, 50.0), (2, 400.0)]), 1.0, 0);
        assert_eq!(cost.cores["broker-jit"], 0.4);
        assert_eq!(cost.cores_total, 1.0, "the broker's second, its compiling in it, and not the load generator's: {cost:?}");
    }

    #[test]
    fn this_process_has_no_jit_compiler() {
        assert_eq!(jit_compiler_threads(std::process::id()), None);
    }
}
