//! A service's process group, as what is left of it after its leader exited: on machines
//! without cgroups, this is how what a service forked is found and killed.

/// The process group of a service's exited main process, for machines without cgroups:
/// what it forked stays in the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastGroup {
    /// The group id: the exited leader's pid.
    pub pgid: u32,
    /// The leader's start time (clock ticks since boot).
    pub leader_ticks: u64,
}

impl LastGroup {
    /// The live members of the group. The kernel gives no process a pid that a live group
    /// still uses as its id, so while members remain the number is still ours; once the
    /// group is empty the number may go to a new process, and a live process with this pid
    /// but another start time means exactly that: nothing of ours is left.
    pub fn members(&self) -> Vec<u32> {
        let Ok(pgid) = i32::try_from(self.pgid) else { return Vec::new() };
        if let Ok(p) = procfs::process::Process::new(pgid)
            && let Ok(st) = p.stat()
            && st.starttime != self.leader_ticks
        {
            return Vec::new();
        }
        let Ok(all) = procfs::process::all_processes() else { return Vec::new() };
        all.flatten()
            .filter_map(|p| p.stat().ok())
            .filter(|st| st.pgrp == pgid && st.state != 'Z' && st.starttime >= self.leader_ticks)
            .filter_map(|st| u32::try_from(st.pid).ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    #[test]
    fn test_a_group_whose_number_went_to_another_process_has_no_members() {
        // This test process leads no group of its own usually; use our own pid as a fake
        // group id with a start time that is not ours: the number is someone else's now.
        let me = std::process::id();
        let ticks = procfs::process::Process::myself().and_then(|p| p.stat()).map(|s| s.starttime).unwrap_or(0);
        let reused = LastGroup { pgid: me, leader_ticks: ticks + 1 };
        assert!(reused.members().is_empty());
    }

    #[test]
    fn test_members_of_a_live_group_are_found() {
        let mut child = std::process::Command::new("sleep").arg("30").process_group(0).spawn().expect("spawn sleep");
        let pid = child.id();
        let ticks = procfs::process::Process::new(pid as i32).and_then(|p| p.stat()).map(|s| s.starttime).unwrap_or(0);
        let group = LastGroup { pgid: pid, leader_ticks: ticks };
        assert_eq!(group.members(), vec![pid]);
        let _ = child.kill();
        let _ = child.wait();
        assert!(group.members().is_empty());
    }
}
