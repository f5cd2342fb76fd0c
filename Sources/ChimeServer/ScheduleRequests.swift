import ChimeBroker
import ChimeProtocol
import ChimeSchedule
import Foundation
import NIOCore

/// Opcodes 25–28: schedule operations, their documents JSON (docs/formats.md, "Schedules").
extension RequestHandler {
    /// Writing a schedule needs `publish` on its topic (workers register theirs); pausing,
    /// resuming, triggering, deleting and backfilling one need `admin` on it.
    func scheduleRequest(_ opcode: Opcode, _ payload: ByteBuffer, _ access: RequestAccess) async throws -> ScheduleReply {
        switch opcode {
        case .scheduleWrite:
            let r = try ScheduleWriteRequest(payload: payload)
            var schedule: Schedule
            do {
                schedule = try JSONDecoder().decode(Schedule.self, from: Data(r.definition))
            } catch {
                throw BrokerError(.badSchedule, "the schedule is not a JSON schedule document: \(Self.describe(error))")
            }
            try access.require(.publish, topic: schedule.target.topic)
            if r.mode != 0, access.grant.scope < .admin, let stored = try? await broker.schedule(schedule.name, upcoming: 0) {
                // Pausing and resuming are control's (admin): an update without that scope
                // keeps the stored schedule paused or running, whatever its document says.
                schedule.options.paused = stored.schedule.options.paused
            }
            let write: ScheduleWrite = r.mode == 0 ? .create : r.mode == 1 ? .update : .createOrUpdate
            return try Self.reply(try await broker.writeSchedule(schedule, write))
        case .scheduleControl:
            let r = try ScheduleControlRequest(payload: payload)
            try access.require(.admin, topic: try await broker.schedule(r.name, upcoming: 0).schedule.target.topic)
            switch r.action {
            case ScheduleControlRequest.trigger:
                let published = try await broker.triggerSchedule(r.name)
                return try Self.reply(OccurrencePublished(at: nil, published))
            case ScheduleControlRequest.pause: try await broker.controlSchedule(r.name, .pause)
            case ScheduleControlRequest.resume: try await broker.controlSchedule(r.name, .resume)
            default: try await broker.controlSchedule(r.name, .delete)
            }
            return try Self.reply(try? await broker.schedule(r.name, upcoming: 0))
        case .scheduleBackfill:
            let r = try ScheduleBackfillRequest(payload: payload)
            try access.require(.admin, topic: try await broker.schedule(r.name, upcoming: 0).schedule.target.topic)
            let published = try await broker.backfillSchedule(r.name, from: r.from, to: r.to)
            return try Self.reply(BackfillAnswer(occurrences: published.map { OccurrencePublished(at: $0.occurrence, $0.published) }))
        case .scheduleList:
            let r = try ScheduleListRequest(payload: payload)
            try access.require(.read)
            if r.name.isEmpty {
                let visible = await broker.schedules(upcoming: Int(r.upcoming)).filter { access.sees($0.schedule.target.topic) }
                return try Self.reply(ScheduleList(schedules: visible))
            }
            let one = try await broker.schedule(r.name, upcoming: Int(r.upcoming))
            try access.require(.read, topic: one.schedule.target.topic)
            return try Self.reply(ScheduleList(schedules: [one]))
        default:
            preconditionFailure("not a schedule opcode: \(opcode)")
        }
    }

    private static func reply(_ value: some Encodable) throws -> ScheduleReply {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return ScheduleReply(document: Array(try encoder.encode(value)))
    }

    /// A decoding error in one line: the field it is about and what was wrong.
    private static func describe(_ error: any Error) -> String {
        guard let e = error as? DecodingError else { return "\(error)" }
        switch e {
        case .keyNotFound(let key, let c): return "missing \((c.codingPath + [key]).map(\.stringValue).joined(separator: "."))"
        case .typeMismatch(_, let c), .valueNotFound(_, let c), .dataCorrupted(let c):
            return "\(c.codingPath.map(\.stringValue).joined(separator: ".")): \(c.debugDescription)"
        @unknown default: return "\(e)"
        }
    }
}

/// One occurrence published by a trigger or a backfill: its time, its message id, and
/// whether it was stored before (its dedup key seen within the topic's dedup window).
struct OccurrencePublished: Encodable {
    var at: Int64?
    var id: String?
    var duplicate: Bool
    init(at: Int64?, _ p: PublishedMessage) {
        self.at = at
        id = p.id?.description
        duplicate = p.duplicate
    }
}

struct BackfillAnswer: Encodable { var occurrences: [OccurrencePublished] }
struct ScheduleList: Encodable { var schedules: [ScheduleInfo] }
