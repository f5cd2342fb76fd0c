import ChimeBroker
import ChimeProtocol
import ChimeSchedule
import Foundation
import NIOCore

/// Opcodes 25–28: schedule operations, their documents JSON (docs/formats.md, "Schedules").
extension RequestHandler {
    func scheduleRequest(_ opcode: Opcode, _ payload: ByteBuffer) async throws -> ScheduleReply {
        switch opcode {
        case .scheduleWrite:
            let r = try ScheduleWriteRequest(payload: payload)
            let schedule: Schedule
            do {
                schedule = try JSONDecoder().decode(Schedule.self, from: Data(r.definition))
            } catch {
                throw BrokerError(.badSchedule, "the schedule is not a JSON schedule document: \(Self.describe(error))")
            }
            let write: ScheduleWrite = r.mode == 0 ? .create : r.mode == 1 ? .update : .createOrUpdate
            return try Self.reply(try await broker.writeSchedule(schedule, write))
        case .scheduleControl:
            let r = try ScheduleControlRequest(payload: payload)
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
            let published = try await broker.backfillSchedule(r.name, from: r.from, to: r.to)
            return try Self.reply(BackfillAnswer(occurrences: published.map { OccurrencePublished(at: $0.occurrence, $0.published) }))
        case .scheduleList:
            let r = try ScheduleListRequest(payload: payload)
            if r.name.isEmpty { return try Self.reply(ScheduleList(schedules: await broker.schedules(upcoming: Int(r.upcoming)))) }
            return try Self.reply(ScheduleList(schedules: [try await broker.schedule(r.name, upcoming: Int(r.upcoming))]))
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
