import ChimeProtocol
import ChimeSchedule
import Foundation

/// An occurrence a trigger or backfill published: its nominal time (nil for a trigger,
/// which is "now"), the message's id, and whether it had been stored before (its dedup
/// key `schedule/<name>/<ms>` seen within the topic's dedup window).
public struct PublishedOccurrence: Sendable, Equatable, Decodable {
    public var at: Int64?
    public var id: String?
    public var duplicate: Bool
}

/// Schedules on the broker (protocol version 7): recurring messages it publishes itself,
/// exactly once per occurrence.
extension ChimeClient {
    /// Creates or updates the schedule `schedule.name` (see `ScheduleWrite`); returns it as
    /// the broker stored it, with its next occurrence. A create of an existing schedule with
    /// the same definition answers it unchanged, so every worker of a fleet can make the
    /// schedules it needs when it starts.
    public func schedule(_ schedule: Schedule, _ write: ScheduleWrite = .create) async throws -> ScheduleInfo {
        let mode: UInt8 = write == .create ? 0 : write == .update ? 1 : 2
        let document = try JSONEncoder().encode(schedule)
        return try await scheduleCall(.scheduleWrite, ScheduleWriteRequest(mode: mode, definition: Array(document)), as: ScheduleInfo.self)
    }

    /// Pauses (the planned occurrence is cancelled), resumes (from the next occurrence
    /// after now) or deletes a schedule.
    public func controlSchedule(_ name: String, _ action: ScheduleAction) async throws {
        let code: UInt8 =
            switch action {
            case .pause: ScheduleControlRequest.pause
            case .resume: ScheduleControlRequest.resume
            case .delete: ScheduleControlRequest.delete
            }
        _ = try await call(.scheduleControl, ScheduleControlRequest(name: name, action: code), as: ScheduleReply.self)
    }

    /// Publishes one occurrence now, beside the planned ones.
    public func triggerSchedule(_ name: String) async throws -> PublishedOccurrence {
        try await scheduleCall(.scheduleControl, ScheduleControlRequest(name: name, action: ScheduleControlRequest.trigger), as: PublishedOccurrence.self)
    }

    /// Publishes now every occurrence of `from...to` (ms since the epoch, not in the
    /// future; at most 10,000), each once within the topic's dedup window.
    public func backfillSchedule(_ name: String, from: Int64, to: Int64) async throws -> [PublishedOccurrence] {
        struct Answer: Decodable { var occurrences: [PublishedOccurrence] }
        return try await scheduleCall(.scheduleBackfill, ScheduleBackfillRequest(name: name, from: from, to: to), as: Answer.self).occurrences
    }

    /// Every schedule, each with its next `upcoming` occurrences after the planned one.
    public func schedules(upcoming: Int = 0) async throws -> [ScheduleInfo] {
        try await list(name: "", upcoming: upcoming)
    }

    /// One schedule; `unknownSchedule` if there is none of that name.
    public func scheduleInfo(_ name: String, upcoming: Int = 5) async throws -> ScheduleInfo {
        try await list(name: name, upcoming: upcoming)[0]
    }

    private func list(name: String, upcoming: Int) async throws -> [ScheduleInfo] {
        struct Answer: Decodable { var schedules: [ScheduleInfo] }
        let request = ScheduleListRequest(name: name, upcoming: UInt32(max(0, min(upcoming, 1_000))))
        return try await scheduleCall(.scheduleList, request, as: Answer.self).schedules
    }

    private func scheduleCall<T: Decodable>(_ opcode: Opcode, _ request: some WireMessage, as: T.Type) async throws -> T {
        let reply = try await call(opcode, request, as: ScheduleReply.self)
        do {
            return try JSONDecoder().decode(T.self, from: Data(reply.document))
        } catch {
            throw ClientError.protocolViolation("the broker's schedule answer does not decode: \(error)")
        }
    }
}
