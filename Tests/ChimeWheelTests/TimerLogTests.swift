import ChimeStore
import ChimeTestSupport
import Foundation
import Testing

@testable import ChimeWheel

@Suite struct TimerEntryTests {
    private func one(_ build: (inout [UInt8]) -> Void) throws -> TimerEntry {
        var out: [UInt8] = []
        build(&out)
        let frame = try out.withUnsafeBytes { try TimerEntryFormat.check($0, limits: BatchLimits()) }
        #expect(frame.totalSize == out.count)
        try TimerEntryFormat.validateForAppend(out, frame: frame, configuration: LogConfiguration())
        return TimerEntryFormat.entry(checked: out, frame: frame)
    }

    @Test func messageRoundTripsEveryField() throws {
        let m = ScheduledMessage(
            dueAt: 1_800_000_000_123, publishedAt: 1_799_000_000_000, destination: 7, key: Array("parcel-9".utf8),
            headers: [RecordHeader(name: "trace", value: [1, 2, 3]), RecordHeader(name: "", value: [])], body: Array("check the parcel".utf8))
        let e = try one { TimerEntry.appendMessage(m, level: 3, slot: 41, next: 1234, placedAt: 1_799_000_000_500, to: &$0) }
        #expect(e.kind == .message)
        #expect(e.level == 3 && e.slot == 41 && e.next == 1234 && e.dueAt == m.dueAt && e.placedAt == 1_799_000_000_500)
        #expect(try e.message() == m)
        let keyless = ScheduledMessage(dueAt: 5, publishedAt: 4, body: [])
        #expect(try one { TimerEntry.appendMessage(keyless, level: 0, slot: 5, next: -1, placedAt: 0, to: &$0) }.message() == keyless)
    }

    @Test(arguments: [TimerEntry.Kind.link, .cancel, .slotCleared, .slotFired])
    func frameOnlyKindsAreFortyEightBytes(kind: TimerEntry.Kind) throws {
        let e = try one { TimerEntry.append(kind, level: 2, slot: 255, dueAt: 99, next: -1, reference: 4096, to: &$0) }
        #expect(e.bytes.count == 48)
        #expect(e.kind == kind && e.level == 2 && e.slot == 255 && e.dueAt == 99 && e.next == -1 && e.reference == 4096)
        #expect(throws: StoreError.self) { try e.message() }
    }

    /// Version-1 entries (written before kinds 7-10 and the `continues` flag) and version-2
    /// ones (before kind 11) are still read; an older entry using something newer is refused.
    @Test func olderVersionEntriesAreStillRead() throws {
        func asVersionOne(_ kind: TimerEntry.Kind, continues: Bool) -> [UInt8] {
            var out: [UInt8] = []
            TimerEntry.append(kind, level: 1, slot: 2, dueAt: 64, next: -1, reference: 0, to: &out)
            out[16] = 1
            TimerEntry.setContinues(continues, &out)  // seals it again
            return out
        }
        func accepted(_ bytes: [UInt8]) -> Bool {
            (try? bytes.withUnsafeBytes { try TimerEntryFormat.check($0, limits: BatchLimits()) }) != nil
        }
        #expect(accepted(asVersionOne(.link, continues: false)))
        #expect(accepted(asVersionOne(.slotFired, continues: false)))
        #expect(!accepted(asVersionOne(.cascadeProgress, continues: false)))
        #expect(!accepted(asVersionOne(.link, continues: true)))
        // Version 2 (kinds 2-10, with `continues`) is read too; kind 11 needs version 3.
        func asVersionTwo(_ kind: TimerEntry.Kind) -> [UInt8] {
            var out: [UInt8] = []
            TimerEntry.append(kind, level: 0, slot: 2, dueAt: 64, next: -1, reference: 0, to: &out)
            out[16] = 2
            TimerEntry.setContinues(true, &out)
            return out
        }
        #expect(accepted(asVersionTwo(.fireSequence)))
        #expect(!accepted(asVersionTwo(.handOver)))
        // Version 3 (kinds 2-11) is read too; kinds 12 and 13 need version 4.
        func asVersionThree(_ kind: TimerEntry.Kind) -> [UInt8] {
            var out: [UInt8] = []
            TimerEntry.append(kind, level: 1, slot: 2, dueAt: 128, next: 0, reference: 128, to: &out)
            out[16] = 3
            TimerEntry.setContinues(false, &out)
            return out
        }
        #expect(accepted(asVersionThree(.handOver)))
        #expect(!accepted(asVersionThree(.slotMoved)))
        #expect(!accepted(asVersionThree(.slotMovedAhead)))
        var current: [UInt8] = []
        TimerEntry.append(.slotMoved, level: 1, slot: 2, dueAt: 128, next: 0, reference: 128, to: &current)
        #expect(current[16] == 4 && accepted(current))
    }

    @Test func everyFlippedBitIsCaught() throws {
        var out: [UInt8] = []
        TimerEntry.appendMessage(ScheduledMessage(dueAt: 1, publishedAt: 0, key: [1], body: Array("x".utf8)), level: 0, slot: 1, next: -1, placedAt: 0, to: &out)
        for position in 16..<out.count {
            for bit in [0, 7] {
                var bad = out
                bad[position] ^= UInt8(1 << bit)
                #expect(throws: StoreError.self, "byte \(position) bit \(bit)") {
                    try bad.withUnsafeBytes { _ = try TimerEntryFormat.check($0, limits: BatchLimits()) }
                }
            }
        }
    }

    @Test func recordBatchesAreNotTimerEntriesAndViceVersa() throws {
        var builder = RecordBatchBuilder()
        builder.append(Record(timestamp: 0, body: [1]))
        let batch = try builder.build()
        #expect(throws: StoreError.self) { try batch.withUnsafeBytes { _ = try TimerEntryFormat.check($0, limits: BatchLimits()) } }
        var link: [UInt8] = []
        TimerEntry.append(.link, level: 0, slot: 0, dueAt: 0, next: -1, reference: 0, to: &link)
        #expect(throws: StoreError.self) { try RecordBatch(validating: link + [UInt8](repeating: 0, count: 16)) }
    }
}

@Suite struct TimerLogTests {
    private func link(due: Int64, next: Int64 = -1, reference: Int64 = 0) -> [UInt8] {
        var out: [UInt8] = []
        TimerEntry.append(.link, level: 0, slot: Int(due & 63), dueAt: due, next: next, reference: reference, to: &out)
        return out
    }

    private func message(_ text: String, due: Int64, next: Int64 = -1) -> [UInt8] {
        var out: [UInt8] = []
        TimerEntry.appendMessage(ScheduledMessage(dueAt: due, publishedAt: 0, body: Array(text.utf8)), level: 0, slot: Int(due & 63), next: next, placedAt: 0, to: &out)
        return out
    }

    /// Addresses are byte positions: each append lands at the previous end, across
    /// segments, and `entry(at:)` reads it back directly; a list threaded backwards
    /// through `next` walks in reverse append order.
    @Test func addressesAreBytePositionsAndListsWalkBackwards() throws {
        let dir = TemporaryDirectory()
        let config = LogConfiguration(segmentBytes: 400, durability: .never)
        var log = try TimerLog.open(directory: dir.path, configuration: config, logger: testLogger)
        var head: Int64 = -1
        var positions: [Int64] = []
        var expectedEnd: Int64 = 0
        for i in 0..<40 {
            let bytes = i % 3 == 0 ? message("m\(i)", due: 1000 + Int64(i), next: head) : link(due: 1000 + Int64(i), next: head, reference: Int64(i))
            let r = try log.append(bytes)
            #expect(r.baseOffset == expectedEnd, "entry \(i) lands at the end")
            expectedEnd += Int64(bytes.count)
            positions.append(r.baseOffset)
            head = r.baseOffset
        }
        #expect(log.endOffset == expectedEnd)
        #expect(log.segmentInfos.count > 3)
        #expect(log.segmentInfos.allSatisfy { $0.nextOffset - $0.baseOffset == $0.bytes })
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".timer") }.sorted()
        #expect(names.first == "00000000000000000000.timer")
        #expect(names.map { Int64($0.prefix(20))! } == log.segmentInfos.map(\.baseOffset))

        func walk(_ log: TimerLog) throws -> [Int64] {
            var seen: [Int64] = []
            var at = head
            while at >= 0 {
                let e = try log.entry(at: at)
                #expect(e.position == at)
                seen.append(at)
                at = e.next
            }
            return seen
        }
        #expect(try walk(log) == positions.reversed())
        #expect(try log.entry(at: positions[3]).message().body == Array("m3".utf8))
        try log.close()
        log = try TimerLog.open(directory: dir.path, configuration: config, logger: testLogger)
        #expect(try walk(log) == positions.reversed())
        #expect(try log.append(link(due: 5)).baseOffset == expectedEnd)
        try log.close()
    }

    @Test func anAddressThatIsNotAnEntryIsATypedError() throws {
        let dir = TemporaryDirectory()
        let log = try TimerLog.open(directory: dir.path, configuration: LogConfiguration(durability: .never), logger: testLogger)
        try log.append(contentsOf: [link(due: 1), link(due: 2)])
        #expect((#expect(throws: StoreError.self) { try log.entry(at: 96) })?.code == .offsetOutOfRange)
        #expect((#expect(throws: StoreError.self) { try log.entry(at: -1) })?.code == .offsetOutOfRange)
        #expect((#expect(throws: StoreError.self) { try log.entry(at: 8) })?.code == .corruptBatch)
        #expect(try log.entry(at: 48).dueAt == 2)
        try log.close()
    }

    @Test func tornTailIsCutAndDamageKeepsLaterEntriesAtTheirPositions() throws {
        let dir = TemporaryDirectory()
        let config = LogConfiguration(durability: .never)
        var log = try TimerLog.open(directory: dir.path, configuration: config, logger: testLogger)
        let entries = (0..<10).map { message("m\($0)", due: Int64($0)) }
        var positions: [Int64] = []
        for e in entries { positions.append(try log.append(e).baseOffset) }
        let end = log.endOffset
        try log.close()
        let file = dir.file("00000000000000000000.timer")
        try FileManager.default.removeItem(atPath: dir.file("00000000000000000000.index"))
        try flipBit(file, at: positions[4] + 30)          // damage in the middle
        truncateFile(file, to: end - 5)                      // and a torn last entry

        log = try TimerLog.open(directory: dir.path, configuration: config, logger: testLogger)
        #expect(log.recovery.damaged.map(\.start) == [positions[4]])
        #expect(log.recovery.truncatedBytes == end - 5 - positions[9])
        #expect(log.endOffset == positions[9], "the next entry goes where the torn one was")
        #expect(try log.entry(at: positions[5]).message().body == Array("m5".utf8))
        #expect(throws: StoreError.self) { try log.entry(at: positions[4]) }
        #expect(try log.append(link(due: 1)).baseOffset == positions[9])
        try log.close()
    }
}
