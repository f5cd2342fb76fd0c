import ChimeSchedule
import ChimeWheel
import Synchronization

/// Which schedules have an occurrence out that a group has not settled yet, broker-wide:
/// the overlap policies (`skip`, `bufferOne`) ask it when an occurrence fires, and fixed
/// delay plans its next occurrence when it is settled. Written by the partitions' sinks
/// (an occurrence appended to the ready log) and by the groups (an ack, or a dead letter,
/// of a watched message). In memory: a restart rebuilds it from the schedule tables'
/// `published` records (`Partition.recoverSchedules`).
final class OccurrenceWatch: Sendable {
    /// A message in a ready log, as a group settles it.
    struct Key: Hashable, Sendable {
        var group: String
        var partition: PartitionKey
        var offset: Int64
    }

    struct Out: Sendable {
        var key: Key
        var occurrence: Int64
    }

    fileprivate struct State {
        /// Schedule → its occurrence out.
        var out: [String: Out] = [:]
        var byKey: [Key: String] = [:]
        /// Groups with a watched message (acks of other groups are not looked at).
        var groups: [String: Int] = [:]
        /// `bufferOne`: the occurrence held back while one was out.
        var buffered: [String: FiredMessage] = [:]
    }
    private let state = Mutex(State())
    /// Told of schedules whose occurrence was settled (on the settling group's actor: it
    /// must hop elsewhere to do anything that waits).
    let onSettled = Mutex<(@Sendable ([(schedule: String, buffered: FiredMessage?)]) -> Void)?>(nil)

    func isOut(_ schedule: String) -> Bool { state.withLock { $0.out[schedule] != nil } }

    func watches(group: String) -> Bool { state.withLock { $0.groups[group] != nil } }

    /// An occurrence of `schedule` is out: its message is `key`, unsettled by its group.
    func published(_ schedule: String, occurrence: Int64, as key: Key) {
        state.withLock { s in
            if let old = s.out[schedule] { s.forget(old.key) }
            s.out[schedule] = Out(key: key, occurrence: occurrence)
            s.byKey[key] = schedule
            s.groups[key.group, default: 0] += 1
        }
    }

    /// Holds `occurrence` back until the one out is settled; false when one is held already
    /// (`bufferOne` keeps one: this one is skipped).
    func buffer(_ schedule: String, _ occurrence: FiredMessage) -> Bool {
        state.withLock { s in
            guard s.buffered[schedule] == nil else { return false }
            s.buffered[schedule] = occurrence
            return true
        }
    }

    /// The schedule no longer waits for anything (deleted, updated, paused).
    func forget(_ schedule: String) {
        state.withLock { s in
            if let old = s.out.removeValue(forKey: schedule) { s.forget(old.key) }
            s.buffered[schedule] = nil
        }
    }

    /// `group` settled these ready-log messages of `partition`: the schedules they were
    /// out for are free (and given their buffered occurrence).
    func settled(group: String, partition: PartitionKey, offsets: [Int64]) {
        let freed: [(schedule: String, buffered: FiredMessage?)] = state.withLock { s in
            guard s.groups[group] != nil else { return [] }
            var freed: [(String, FiredMessage?)] = []
            for offset in offsets {
                let key = Key(group: group, partition: partition, offset: offset)
                guard let schedule = s.byKey[key] else { continue }
                s.out[schedule] = nil
                s.forget(key)
                freed.append((schedule, s.buffered.removeValue(forKey: schedule)))
            }
            return freed
        }
        if !freed.isEmpty, let notify = onSettled.withLock({ $0 }) { notify(freed) }
    }
}

extension OccurrenceWatch.State {
    fileprivate mutating func forget(_ key: OccurrenceWatch.Key) {
        byKey[key] = nil
        if let n = groups[key.group] { groups[key.group] = n > 1 ? n - 1 : nil }
    }
}
