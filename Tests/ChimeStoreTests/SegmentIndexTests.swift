import Testing

@testable import ChimeStore

@Suite struct SegmentIndexTests {
    private func sample() -> SegmentIndex {
        var index = SegmentIndex(baseOffset: 1000, intervalBytes: 4096)
        var position: Int64 = 0
        var offset: Int64 = 1000
        for size in [100, 5000, 100, 100, 4000, 100, 9000, 10] {
            index.didAppend(baseOffset: offset, position: position, size: size)
            position += Int64(size)
            offset += 10
        }
        return index
    }

    @Test func entriesAreSparseEveryIntervalBytes() {
        let index = sample()
        // First batch always; then the first batch after ≥ 4096 bytes since the last entry.
        #expect(index.entries.map(\.position) == [0, 5100, 9300, 18_400])
        #expect(index.entries.map(\.relativeOffset) == [0, 20, 50, 70])
    }

    @Test func lookupGivesTheLastEntryAtOrBefore() {
        let index = sample()
        #expect(index.position(atOrBefore: 999) == 0)
        #expect(index.position(atOrBefore: 1000) == 0)
        #expect(index.position(atOrBefore: 1019) == 0)
        #expect(index.position(atOrBefore: 1020) == 5100)
        #expect(index.position(atOrBefore: 1049) == 5100)
        #expect(index.position(atOrBefore: 1055) == 9300)
        #expect(index.position(atOrBefore: 1069) == 9300)
        #expect(index.position(atOrBefore: 1_000_000) == 18_400)
    }

    /// The segment file the sample index describes.
    static let covered = FileStatus(size: 18_510, changeTime: 1_796_000_000_123_456_789)

    @Test func encodeDecodeRoundTrip() throws {
        let index = sample()
        let bytes = index.encode(nextOffset: 1080, maxTimestamp: 77, covered: Self.covered)
        let loaded = try #require(SegmentIndex.decode(bytes, baseOffset: 1000, segment: Self.covered, intervalBytes: 4096))
        #expect(loaded.index.entries == index.entries)
        #expect(loaded.nextOffset == 1080)
        #expect(loaded.maxTimestamp == 77)
    }

    @Test func staleDamagedOrForeignIndexesAreRejected() {
        let bytes = sample().encode(nextOffset: 1080, maxTimestamp: 77, covered: Self.covered)
        #expect(SegmentIndex.decode(bytes, baseOffset: 1000, segment: FileStatus(size: 18_511, changeTime: Self.covered.changeTime), intervalBytes: 4096) == nil, "stale: segment grew")
        #expect(
            SegmentIndex.decode(bytes, baseOffset: 1000, segment: FileStatus(size: 18_510, changeTime: Self.covered.changeTime + 1), intervalBytes: 4096) == nil,
            "stale: the segment file changed since (a write moved its change time)")
        #expect(SegmentIndex.decode(bytes, baseOffset: 999, segment: Self.covered, intervalBytes: 4096) == nil, "another segment's index")
        #expect(SegmentIndex.decode(Array(bytes.dropLast()), baseOffset: 1000, segment: Self.covered, intervalBytes: 4096) == nil)
        #expect(SegmentIndex.decode([], baseOffset: 1000, segment: Self.covered, intervalBytes: 4096) == nil)
        for position in 0..<bytes.count {
            var damaged = bytes
            damaged[position] ^= 0x04
            #expect(SegmentIndex.decode(damaged, baseOffset: 1000, segment: Self.covered, intervalBytes: 4096) == nil, "flip at \(position)")
        }
    }

    @Test func truncateDropsEntriesAtOrPastTheCut() {
        var index = sample()
        index.truncate(toPosition: 9400)
        #expect(index.entries.map(\.position) == [0, 5100, 9300])
    }

    @Test func segmentFileNamesHaveTwentyDigits() {
        #expect(LogSegment<RecordBatchFormat>.fileName(1234, "log") == "00000000000000001234.log")
        #expect(LogSegment<RecordBatchFormat>.baseOffset(fromFileName: "00000000000000001234.log") == 1234)
        #expect(LogSegment<RecordBatchFormat>.baseOffset(fromFileName: "1234.log") == nil)
        #expect(LogSegment<RecordBatchFormat>.baseOffset(fromFileName: "00000000000000001234.index") == nil)
        #expect(LogSegment<RecordBatchFormat>.baseOffset(fromFileName: "0000000000000000123x.log") == nil)
    }
}
