// libFuzzer target for ChimeProtocol's frame decoder and payload codecs (Fuzz/README.md).
// Only the fuzz build (Fuzz/build.sh: -sanitize=fuzzer,address and -DCHIME_FUZZ) compiles
// the entry point; a normal `swift build` compiles the stub at the end, so this target
// costs the everyday build next to nothing and needs no libFuzzer.
import ChimeProtocol
import ChimeStore
import NIOCore

#if CHIME_FUZZ

/// One input, laid out so the fuzzer steers the decoder as well as the bytes:
///
///     0  u16 split   the stream arrives in two reads, cut at split % (stream bytes + 1)
///     2  u8  limit   the frame size limit: 1 << (12 + limit % 13) bytes (4 KiB ... 16 MiB)
///     3  ...         the byte stream a peer sent
///
/// Thrown errors are expected (they must be `ProtocolError`s); a crash, a trap, a leak or
/// an allocation past libFuzzer's -malloc_limit_mb is a bug.
@_cdecl("LLVMFuzzerTestOneInput")
public func frameFuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 3 else { return 0 }
    let input = UnsafeBufferPointer(start: data, count: size)
    let stream = input[3...]
    let split = 3 + Int(UInt16(input[0]) | UInt16(input[1]) << 8) % (stream.count + 1)
    let limit = 1 << (12 + Int(input[2]) % 13)

    // The stream in two reads, as a socket might deliver it ...
    var pieces = ByteBuffer()
    pieces.writeBytes(input[3..<split])
    var inPieces = FramesAndEnd()
    inPieces.drain(&pieces, limit)
    if inPieces.error == nil {
        pieces.writeBytes(input[split...])
        inPieces.drain(&pieces, limit)
    }
    // ... must cut the same frames as the stream in one read, and stop at the same error.
    var whole = ByteBuffer(bytes: stream)
    var inOne = FramesAndEnd()
    inOne.drain(&whole, limit)
    precondition(inPieces.frames == inOne.frames, "frames depend on where the stream was cut")
    precondition(inPieces.error == inOne.error, "the refusal depends on where the stream was cut")

    for frame in inOne.frames { decodePayload(frame) }
    return 0
}

/// The frames cut out of a buffer until more bytes are needed or the decoder refuses.
struct FramesAndEnd {
    var frames: [Frame] = []
    var error: ProtocolError?

    mutating func drain(_ buffer: inout ByteBuffer, _ limit: Int) {
        do {
            while let frame = try FrameDecoder.next(from: &buffer, maxFrameBytes: limit) {
                precondition(frame.payload.readableBytes <= limit - 8, "a frame over the limit was cut")
                frames.append(frame)
            }
        } catch let e as ProtocolError {
            error = e
        } catch {
            preconditionFailure("the frame decoder threw something other than a ProtocolError: \(error)")
        }
    }
}

/// Decodes a payload as the type its opcode and flags name, the way the server (requests)
/// and the client (responses) do; what decodes must encode back to the same value.
func decodePayload(_ frame: Frame) {
    if frame.isError { return check(ErrorReply.self, frame.payload) }
    switch (frame.opcode, frame.isResponse) {
    case (.hello, false): check(Hello.self, frame.payload)
    case (.hello, true): check(HelloReply.self, frame.payload)
    case (.createTopic, false): check(CreateTopic.self, frame.payload)
    case (.createTopic, true): check(WireTopic.self, frame.payload)
    case (.listTopics, false): check(Empty.self, frame.payload)
    case (.listTopics, true): check(TopicList.self, frame.payload)
    case (.deleteTopic, false): check(TopicName.self, frame.payload)
    case (.publish, false): checkEveryLayout(Publish.self, frame.payload)
    case (.publish, true), (.publishRecords, true): check(PublishReply.self, frame.payload)
    case (.publishRecords, false):
        check(PublishRecords.self, frame.payload)
        if let r = try? PublishRecords(payload: frame.payload) { checkBatch(r.batch) }
    case (.cancel, false), (.reschedule, false): checkEveryLayout(ScheduleChange.self, frame.payload)
    case (.reschedule, true): check(WireMessageID.self, frame.payload)
    case (.join, false): checkEveryLayout(Join.self, frame.payload)
    case (.join, true), (.heartbeat, true): check(WireMembership.self, frame.payload)
    case (.heartbeat, false), (.leave, false): check(MemberRef.self, frame.payload)
    case (.fetch, false): check(Fetch.self, frame.payload)
    case (.fetch, true), (.peek, true): check(Deliveries.self, frame.payload)
    case (.peek, false): check(Peek.self, frame.payload)
    case (.ack, false), (.nack, false), (.extend, false), (.term, false), (.release, false): checkEveryLayout(Settle.self, frame.payload)
    case (.ack, true), (.nack, true), (.extend, true), (.term, true), (.release, true): check(SettleReply.self, frame.payload)
    case (.stats, false): check(StatsRequest.self, frame.payload)
    case (.stats, true): check(StatsReply.self, frame.payload)
    case (.createGroup, false): check(CreateGroup.self, frame.payload)
    case (.configureGroup, false): check(ConfigureGroup.self, frame.payload)
    case (.describeGroup, false), (.deleteGroup, false): check(GroupRef.self, frame.payload)
    case (.createGroup, true), (.configureGroup, true), (.describeGroup, true): check(WireGroupSettings.self, frame.payload)
    case (.deleteTopic, true), (.cancel, true), (.leave, true), (.deleteGroup, true): check(Empty.self, frame.payload)
    case (.jobStatus, false): check(JobStatusRequest.self, frame.payload)
    case (.jobStatus, true): check(JobStatusReply.self, frame.payload)
    case (.scheduleWrite, false): check(ScheduleWriteRequest.self, frame.payload)
    case (.scheduleControl, false): check(ScheduleControlRequest.self, frame.payload)
    case (.scheduleBackfill, false): check(ScheduleBackfillRequest.self, frame.payload)
    case (.scheduleList, false): check(ScheduleListRequest.self, frame.payload)
    case (.scheduleWrite, true), (.scheduleControl, true), (.scheduleBackfill, true), (.scheduleList, true): check(ScheduleReply.self, frame.payload)
    case (.lockAcquire, false): check(LockAcquire.self, frame.payload)
    case (.lockRenew, false): check(LockRenew.self, frame.payload)
    case (.lockRelease, false): check(LockRelease.self, frame.payload)
    case (.lockList, false): check(LockListRequest.self, frame.payload)
    case (.lockAcquire, true), (.lockRenew, true): check(LockGrantReply.self, frame.payload)
    case (.lockRelease, true): check(Empty.self, frame.payload)
    case (.lockList, true): check(LockListReply.self, frame.payload)
    case (.jobAbort, false): check(JobAbort.self, frame.payload)
    case (.jobAbort, true): check(JobAbortReply.self, frame.payload)
    case (.abortNotices, false): check(MemberRef.self, frame.payload)
    case (.abortNotices, true): check(AbortNotices.self, frame.payload)
    case (.jobSnooze, false): check(JobSnooze.self, frame.payload)
    case (.jobSnooze, true): check(JobSnoozeReply.self, frame.payload)
    case (.callbackComplete, false): check(CallbackComplete.self, frame.payload)
    case (.callbackComplete, true): check(Empty.self, frame.payload)
    case (.flowSpawn, false): check(FlowSpawn.self, frame.payload)
    case (.flowSpawn, true): check(FlowSpawnReply.self, frame.payload)
    case (.flowQuery, false): check(FlowQuery.self, frame.payload)
    case (.flowQuery, true): check(FlowQueryReply.self, frame.payload)
    case (.flowAbort, false): check(FlowAbort.self, frame.payload)
    case (.flowAbort, true): check(FlowAbortReply.self, frame.payload)
    }
}

/// The checks a broker runs on a client-encoded batch before it stores anything
/// (`ClientBatchRules`, with the broker's limits): whatever the header fields say (counts,
/// timestamps, sizes at their extremes), the answer is the records or a violation, never a
/// trap.
private func checkBatch(_ batch: [UInt8]) {
    let rules = ClientBatchRules(maxRecords: 100_000, maxTimestampSkewMilliseconds: 3_600_000, maxMessageBytes: 1 << 20, reservedHeaderPrefix: "chime-")
    do {
        let count = try rules.check(batch, receivedAt: FrameFuzzClock.now).records.count
        precondition(count > 0 && count <= rules.maxRecords, "a batch of \(count) records passed")
    } catch {
        return
    }
}

/// A fixed "now" (the seeds' batches are stamped with it), so a run replays exactly.
enum FrameFuzzClock {
    static let now: Int64 = 1_764_000_000_000
}

/// A payload whose layout changed between protocol versions, read as each version reads it.
private func checkEveryLayout<M: WireMessage>(_ type: M.Type, _ payload: ByteBuffer) {
    for version in ProtocolVersion.oldest...ProtocolVersion.current { check(type, payload, version: version) }
}

private func check<M: WireMessage>(_ type: M.Type, _ payload: ByteBuffer, version: UInt16 = ProtocolVersion.current) {
    let message: M
    do {
        message = try M(payload: payload, version: version)
    } catch is ProtocolError {
        return
    } catch {
        preconditionFailure("decoding \(M.self) threw something other than a ProtocolError: \(error)")
    }
    let again = try? M(payload: message.payload(), version: version)
    precondition(again == message, "\(M.self) does not survive encode → decode")
}

#else

import Foundation

/// Without libFuzzer this program writes the seed corpus (Fuzz/corpus/) with the real
/// encoders, so the seeds stay valid frames as the protocol changes:
/// `swift run FrameFuzz Fuzz/corpus`.
@main
struct FrameFuzzSeeds {
    static func main() throws {
        guard CommandLine.arguments.count == 2 else {
            print("usage: FrameFuzz <directory>  (writes the seed corpus; Fuzz/build.sh builds the fuzzer)")
            exit(2)
        }
        let directory = CommandLine.arguments[1]
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for (name, stream) in seeds() {
            // The input layout of the fuzz entry point: split point, size limit, stream.
            let split = UInt16(stream.count / 2)
            let input = [UInt8(split & 0xFF), UInt8(split >> 8), 8] + stream
            try Data(input).write(to: URL(fileURLWithPath: "\(directory)/\(name)"))
        }
        print("wrote \(seeds().count) seeds to \(directory)")
    }

    static func frame<M: WireMessage>(_ opcode: Opcode, _ message: M, flags: Frame.Flags = [], id: UInt32 = 1) -> [UInt8] {
        var b = ByteBuffer()
        Frame(opcode: opcode, flags: flags, correlationID: id, payload: message.payload()).write(to: &b)
        return Array(b.readableBytesView)
    }

    static func reply<M: WireMessage>(_ opcode: Opcode, _ message: M) -> [UInt8] { frame(opcode, message, flags: .response) }

    static let now: Int64 = 1_764_000_000_000

    /// A record batch as a client encodes it, one record per timestamp.
    static func batch(_ timestamps: [Int64], compression: Compression = .none, producerId: Int64 = -1) -> [UInt8] {
        var b = RecordBatchBuilder(compression: compression, producerId: producerId, baseSequence: producerId >= 0 ? Int32.max : -1)
        for t in timestamps { [UInt8]("x".utf8).withUnsafeBytes { b.append(timestamp: t, key: [7], body: $0) } }
        return try! b.build()
    }

    /// A few valid frames of every opcode, requests and responses, and a pipelined stream.
    static func seeds() -> [(String, [UInt8])] {
        let settings = WireTopicSettings(
            partitions: 4, retentionMilliseconds: 604_800_000, retentionBytes: nil, maxMessageBytes: 1 << 20, maxAttempts: 5, dedupWindowMilliseconds: 600_000)
        let id = WireMessageID(topicID: 1, partition: 2, kind: 1, value: 4_096)
        let receipt = WireReceipt(topicID: 1, partition: 2, source: 0, offset: 17, lease: 3)
        let record = OutgoingRecord(
            due: .at(1_764_000_000_000), dedupKey: Array("d-1".utf8), key: Array("user-7".utf8),
            headers: [WireHeader(name: "trace", value: [1, 2, 3])], body: Array("welcome".utf8))
        let delivery = WireDelivery(
            topic: "emails", partition: 2, offset: 17, id: id, key: Array("user-7".utf8), headers: [WireHeader(name: "h", value: [9])],
            body: Array("hi".utf8), publishedAt: 1, dueAt: 2, deliveredAt: 3, attempt: 2, lastError: "timeout", receipt: receipt, leaseDeadline: 30_003)
        let membership = WireMembership(memberID: 7, generation: 3, assignment: [("emails", 0), ("emails", 2)])
        let settle = Settle(group: "mailers", memberID: 7, receipts: [receipt, receipt], milliseconds: 30_000, reason: "later")
        let publish = Publish(topic: "emails", partition: 2, producerID: 9, sequence: 4, records: [record, OutgoingRecord(body: [])])
        return [
            ("hello", frame(.hello, Hello(client: "seed", token: Array("s3cret".utf8)))),
            ("hello-reply", reply(.hello, HelloReply(version: 1, server: "chime"))),
            ("error-reply", frame(.fetch, ErrorReply(code: 110, message: "unknown member"), flags: [.response, .error])),
            ("create-topic", frame(.createTopic, CreateTopic(name: "emails", settings: settings))),
            ("create-topic-defaults", frame(.createTopic, CreateTopic(name: "emails", settings: nil))),
            ("topic", reply(.createTopic, WireTopic(name: "emails", id: 1, settings: settings))),
            ("list-topics", frame(.listTopics, Empty())),
            ("topic-list", reply(.listTopics, TopicList(topics: [WireTopic(name: "a", id: 1, settings: settings), WireTopic(name: "b", id: 2, settings: settings)]))),
            ("delete-topic", frame(.deleteTopic, TopicName(name: "emails"))),
            ("publish", frame(.publish, publish)),
            ("publish-v2", frame(.publish, Publish(topic: "emails", records: [record, OutgoingRecord(body: [])], version: 2))),
            ("publish-delay", frame(.publish, Publish(topic: "emails", records: [OutgoingRecord(due: .after(30_000), body: Array("later".utf8))]))),
            ("publish-reply", reply(.publish, PublishReply(outcomes: [.init(id: id, partition: 2, duplicate: false), .init(id: nil, partition: 1, duplicate: true)]))),
            ("cancel", frame(.cancel, ScheduleChange(id: id))),
            ("reschedule", frame(.reschedule, ScheduleChange(id: id, due: .at(1_764_000_060_000)))),
            ("reschedule-later", frame(.reschedule, ScheduleChange(id: id, due: .after(60_000)))),
            ("reschedule-v2", frame(.reschedule, ScheduleChange(id: id, due: .at(1_764_000_060_000), version: 2))),
            ("reschedule-reply", reply(.reschedule, id)),
            ("join", frame(.join, Join(group: "mailers", member: "host-a", topics: ["emails", "sms"]))),
            ("join-no-create", frame(.join, Join(group: "mailers", member: "host-a", topics: ["emails"], createTopics: false))),
            ("join-v3", frame(.join, Join(group: "mailers", member: "host-a", topics: ["emails"], version: 3))),
            ("membership", reply(.join, membership)),
            ("heartbeat", frame(.heartbeat, MemberRef(group: "mailers", memberID: 7))),
            ("leave", frame(.leave, MemberRef(group: "mailers", memberID: 7))),
            ("fetch", frame(.fetch, Fetch(group: "mailers", memberID: 7, max: 100, waitMilliseconds: 1_000))),
            ("deliveries", reply(.fetch, Deliveries(deliveries: [delivery]))),
            ("peek", frame(.peek, Peek(topic: "emails", partition: 1, fromOffset: 40, group: "mailers", max: 100))),
            ("peek-start", frame(.peek, Peek(topic: "emails", partition: 0, max: .max))),
            ("ack", frame(.ack, Settle(group: "mailers", memberID: 7, receipts: [receipt]))),
            ("nack", frame(.nack, settle)),
            ("extend", frame(.extend, settle)),
            ("term", frame(.term, settle)),
            ("release", frame(.release, Settle(group: "mailers", memberID: 7, receipts: [receipt]))),
            ("settle-reply", reply(.ack, SettleReply(results: [nil, ErrorReply(code: 113, message: "already acked")]))),
            ("stats", frame(.stats, StatsRequest(topics: ["t"], groups: [], includeMembers: true))),
            ("publish-records", frame(.publishRecords, PublishRecords(topic: "t", partition: 0, batch: [1, 2, 3]))),
            ("publish-records-batch", frame(.publishRecords, PublishRecords(topic: "t", partition: 0, batch: batch([now, now + 1, now + 2])))),
            ("publish-records-lz4", frame(.publishRecords, PublishRecords(topic: "t", partition: 0, batch: batch(Array(repeating: now, count: 200), compression: .lz4)))),
            ("publish-records-min", frame(.publishRecords, PublishRecords(topic: "t", partition: 0, batch: batch([.min, .max])))),
            ("publish-records-max", frame(.publishRecords, PublishRecords(topic: "t", partition: 0, batch: batch([now, .max], producerId: .max)))),
            ("create-group", frame(.createGroup, CreateGroup(name: "mailers", ifAbsent: true, settings: WireGroupSettings(mode: .shared, keyConcurrency: 2)))),
            ("configure-group", frame(.configureGroup, ConfigureGroup(name: "mailers", settings: WireGroupSettings(maxAttempts: -1, keyRateLimitMillis: 2_500)))),
            ("describe-group", frame(.describeGroup, GroupRef(name: "mailers"))),
            ("job-status", frame(.jobStatus, JobStatusRequest(id: WireMessageID(topicID: 3, partition: 1, kind: 1, value: 4_096), group: "mailers"))),
            ("job-status-reply", reply(.jobStatus, JobStatusReply(statuses: [
                WireJobStatus(group: nil, state: .scheduled(dueAt: now)),
                WireJobStatus(group: "a", state: .running(member: .max, attempt: 3, leaseDeadline: now)),
                WireJobStatus(group: "b", state: .retrying(nextAttemptAt: nil, attempts: 2, lastError: "boom")),
                WireJobStatus(group: "c", state: .dead(reason: "poison", attempts: 5)),
                WireJobStatus(group: "d", state: .succeeded),
                WireJobStatus(group: "e", state: .aborted(whileRunning: true, reason: "stop")),
                WireJobStatus(group: "f", state: .waiting(until: .max, callback: true)),
            ]))),
            ("schedule-write", frame(.scheduleWrite, ScheduleWriteRequest(mode: 2, definition: Array(
                #"{"name":"nightly","spec":{"cron":{"expression":"0 3 * * *","zone":"Europe/Berlin"}},"target":{"topic":"reports","body":[114,117,110]},"options":{"misfire":"all"}}"#.utf8)))),
            ("schedule-control", frame(.scheduleControl, ScheduleControlRequest(name: "nightly", action: ScheduleControlRequest.trigger))),
            ("schedule-backfill", frame(.scheduleBackfill, ScheduleBackfillRequest(name: "nightly", from: .min, to: .max))),
            ("schedule-list", frame(.scheduleList, ScheduleListRequest(name: "", upcoming: 1_000))),
            ("schedule-reply", reply(.scheduleList, ScheduleReply(document: Array(#"{"schedules":[]}"#.utf8)))),
            ("lock-acquire", frame(.lockAcquire, LockAcquire(name: "report/2026-12-05", holder: "worker-1", ttlMilliseconds: .max, waitMilliseconds: .min))),
            ("lock-renew", frame(.lockRenew, LockRenew(name: "report/2026-12-05", token: .max, ttlMilliseconds: 30_000))),
            ("lock-release", frame(.lockRelease, LockRelease(name: "report/2026-12-05", token: 7, force: true))),
            ("lock-list", frame(.lockList, LockListRequest(name: ""))),
            ("fenced-publish", frame(.publish, Publish(topic: "ledger", records: [record], fence: WireFence(lock: "ledger/7", token: .max)))),
            ("fenced-ack", frame(.ack, Settle(group: "g", memberID: 1, receipts: [receipt], fence: WireFence(lock: "ledger/7", token: -1)))),
            ("job-abort", frame(.jobAbort, JobAbort(id: WireMessageID(topicID: 3, partition: 1, kind: 0, value: .max), reason: "customer cancelled"))),
            ("job-abort-reply", reply(.jobAbort, JobAbortReply(outcome: .signalled))),
            ("abort-notices", frame(.abortNotices, MemberRef(group: "g", memberID: .max))),
            ("abort-notices-reply", reply(.abortNotices, AbortNotices(receipts: [receipt, receipt]))),
            ("job-snooze", frame(.jobSnooze, JobSnooze(group: "g", memberID: 1, receipt: receipt, milliseconds: .max, callback: true, state: [1, 2, 3]))),
            ("job-snooze-reply", reply(.jobSnooze, JobSnoozeReply(id: WireMessageID(topicID: 3, partition: 1, kind: 1, value: 8_191), token: "3-1-s8191.1764950400000.9f86d081884c7d65"))),
            ("flow-spawn", frame(.flowSpawn, FlowSpawn(
                group: "g", memberID: 1, receipt: receipt, policy: 1, childTopic: "shards", children: [record, OutgoingRecord(body: [])],
                continuationTopic: "jobs", continuation: OutgoingRecord(body: Array("reduce".utf8))))),
            ("flow-spawn-reply", reply(.flowSpawn, FlowSpawnReply(flow: "3-0-f17"))),
            ("flow-query", frame(.flowQuery, FlowQuery(flow: "3-0-f17", cursor: .max, max: .max))),
            ("flow-query-reply", reply(.flowQuery, FlowQueryReply(
                children: 3, succeeded: 1, failed: 1, policy: 0, state: 1, continuation: WireMessageID(topicID: 3, partition: 0, kind: 0, value: 9),
                outcomes: [WireFlowOutcome(index: 0, succeeded: true, detail: Array("42".utf8)), WireFlowOutcome(index: 2, succeeded: false, detail: [])],
                next: nil))),
            ("flow-abort", frame(.flowAbort, FlowAbort(flow: "3-0-f17", reason: "operator"))),
            ("flow-abort-reply", reply(.flowAbort, FlowAbortReply(aborted: .max))),
            ("callback-complete", frame(.callbackComplete, CallbackComplete(token: "3-1-s8191.1764950400000.9f86d081884c7d65", payload: Array("approved".utf8)))),
            ("lock-grant", reply(.lockAcquire, LockGrantReply(token: 42, expiresAt: .max))),
            ("lock-list-reply", reply(.lockList, LockListReply(locks: [
                WireLock(name: "a", holder: "w", token: 3, expiresAt: 1_000, waiters: 2, partition: 7),
                WireLock(name: "b", holder: nil, token: 0, expiresAt: 0, waiters: .max, partition: 0),
            ]))),
            ("delete-group", frame(.deleteGroup, GroupRef(name: "mailers"))),
            ("group-settings", reply(.describeGroup, WireGroupSettings(
                mode: .partitioned, maxInFlight: 10_000, leaseMilliseconds: 30_000, sessionTimeoutMilliseconds: 10_000, maxAttempts: -1, keyOrdering: false,
                keyConcurrency: -1, rateLimitMillis: -1, rateBurstMillis: -1, keyRateLimitMillis: 1_000, keyRateBurstMillis: -1, maxWindow: 100_000))),
            ("pipelined", frame(.hello, Hello(client: "seed")) + frame(.publish, publish, id: 2) + frame(.fetch, Fetch(group: "g", memberID: 1, max: 10), id: 3)),
        ]
    }
}

#endif
