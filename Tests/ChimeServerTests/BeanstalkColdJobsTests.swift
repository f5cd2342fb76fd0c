@testable import ChimeServer
import ChimeTestSupport
import Testing

/// The index of delayed jobs kept out of memory, the journal index that finds their puts,
/// and the snapshot that carries both across a restart.
@Suite struct BeanstalkColdJobsTests {
    @Test func jobsAreFoundByIdAndAChunkGoesWithItsLastJob() {
        var cold = BeanstalkColdJobs()
        do { let got = cold.insert(5, tube: "a", dueSecond: 10); #expect(got) }
        do { let got = cold.insert(70_000, tube: "b", dueSecond: 3); #expect(got) }
        do { let got = cold.insert(70_001, tube: "a", dueSecond: 3); #expect(got) }
        #expect(cold.count == 3 && cold.chunks.count == 2)
        #expect(cold.chunks.values.allSatisfy { !$0.isDense }, "a few jobs in a chunk: sparse, 8 bytes each")
        #expect(cold.job(70_000)! == ("b", 3))
        #expect(!cold.contains(6) && !cold.contains(1 << 40))
        #expect(cold.count(inTube: "a") == 2)
        do { let got = cold.remove(5); #expect(got == "a") }
        do { let got = cold.remove(5); #expect(got == nil, "taken out once") }
        #expect(cold.chunks.count == 1, "the chunk of ids 0–65,535 went with its last job")
        do { let got = cold.remove(70_000); #expect(got == "b") }
        #expect(cold.tubeNames.values.sorted() == ["a"], "a tube without cold jobs gives its number back")
    }

    @Test func aChunkAgreesWithAPlainDictionaryAcrossItsTurnFromSparseToDense() {
        var rng = SeededRandom(seed: 5)
        var chunk = BeanstalkColdChunk()
        var plain: [Int: (UInt16, UInt32)] = [:]
        var turned = false
        for step in 0..<60_000 {
            let i = Int(rng.next() % UInt64(BeanstalkColdChunk.size))
            if step % 5 == 4, let k = plain.keys.first {
                #expect(chunk.remove(at: k) == plain.removeValue(forKey: k)!.0)
            } else if plain[i] == nil {
                let tube = UInt16(rng.next() % 3) + 1, due = UInt32(rng.next() % 1_000) + 1
                chunk.insert(at: i, tube: tube, due: due)
                plain[i] = (tube, due)
            }
            turned = turned || chunk.isDense
        }
        #expect(turned, "past a quarter of its ids it turned dense")
        #expect(chunk.live == plain.count)
        var seen: [Int] = []
        chunk.forEachJob { i, tube, due in
            seen.append(i)
            #expect(plain[i]! == (tube, due))
        }
        #expect(seen == plain.keys.sorted())
        for i in stride(from: 0, to: BeanstalkColdChunk.size, by: 97) { #expect(chunk.job(at: i).map { [$0.tube: $0.due] } == plain[i].map { [$0.0: $0.1] }) }
    }

    @Test func soonestIsByDueSecondThenIdWithinTheTubeOnly() {
        var cold = BeanstalkColdJobs()
        var rng = SeededRandom(seed: 11)
        var mine: [BeanstalkColdJobs.Due] = []
        for id in UInt64(1)...5_000 {
            let due = UInt32(rng.next() % 50) + 1
            let tube = rng.next() % 3 == 0 ? "other" : "t"
            do { let got = cold.insert(id * 37, tube: tube, dueSecond: due); #expect(got) }
            if tube == "t" { mine.append(.init(dueSecond: due, id: id * 37)) }
        }
        mine.sort()
        #expect(cold.soonest(inTube: "t") == mine.first)
        #expect(cold.soonest(inTube: "t", limit: 10) == Array(mine.prefix(10)))
        #expect(cold.soonest(inTube: "t", limit: 100_000) == mine)
        #expect(cold.soonest(inTube: "none", limit: 10).isEmpty)
        // The remembered soonest stays true through inserts and removes.
        for step in 0..<2_000 {
            if step % 3 == 0 || mine.isEmpty {
                let e = BeanstalkColdJobs.Due(dueSecond: UInt32(rng.next() % 60) + 1, id: 1_000_000 + UInt64(step))
                do { let got = cold.insert(e.id, tube: "t", dueSecond: e.dueSecond); #expect(got) }
                mine.append(e)
                mine.sort()
            } else {
                let gone = mine.remove(at: Int(rng.next() % UInt64(mine.count)))
                cold.remove(gone.id)
            }
            let known = cold.soonest(inTube: "t")
            #expect(known == mine.first, "step \(step)")
        }
    }

    @Test func aDueSecondIsRoundedUpSoAColdJobIsNeverDueEarly() {
        let wall: Int64 = 1_800_000_000_123
        let s = BeanstalkColdJobs.dueSecond(wallMilliseconds: wall)
        #expect(BeanstalkColdJobs.wallMilliseconds(dueSecond: s) >= wall)
        #expect(BeanstalkColdJobs.wallMilliseconds(dueSecond: s) - wall < 1_000)
        #expect(BeanstalkColdJobs.dueSecond(wallMilliseconds: 1_800_000_000_000) == 200_000_000)
    }

    @Test func theJournalIndexPointsAtOrBeforeEachPut() {
        var index = BeanstalkJournalIndex()
        for id in UInt64(1)...1_000 { index.note(id: id, offset: Int64(id) * 3) }
        #expect(index.count == 16, "one entry every 64 puts")
        for id in UInt64(1)...1_000 {
            let at = index.offset(atOrBefore: id)!
            #expect(at <= Int64(id) * 3 && Int64(id) * 3 - at < 64 * 3)
        }
        #expect(index.offset(atOrBefore: 0) == nil)
        index.note(id: 1_001, offset: 100_000)
        #expect(index.offset(atOrBefore: 1_001) == 100_000, "many records since the last entry: a new one")
        index.drop(below: 500)
        #expect(index.offset(atOrBefore: 500)! <= 1_500, "the entry leading to 500 stays")
        #expect(index.offset(atOrBefore: 100) == nil)
    }

    @Test func aSnapshotReadsBackAsWrittenAndADamagedOneIsRefused() throws {
        var cold = BeanstalkColdJobs()
        for id in stride(from: UInt64(3), to: 200_000, by: 7) { _ = cold.insert(id, tube: id % 2 == 0 ? "even" : "odd", dueSecond: UInt32(id % 1_000) + 1) }
        _ = cold.remove(10)
        for id in UInt64(1 << 20)..<(1 << 20) + 20_000 { _ = cold.insert(id, tube: "solo", dueSecond: 5) }
        for id in UInt64(2 << 20)..<(2 << 20) + 20_000 { _ = cold.insert(id, tube: id % 3 == 0 ? "a" : "b", dueSecond: 6) }
        let solo = cold.chunks[1 << 4]!, mixed = cold.chunks[2 << 4]!, thin = cold.chunks[0]!
        #expect(solo.isDense && solo.tubes == nil, "dense, one tube: no tube numbers kept")
        #expect(mixed.isDense && mixed.tubes != nil, "dense, two tubes: a number per id")
        #expect(!thin.isDense, "one id in seven: sparse")
        var index = BeanstalkJournalIndex()
        index.append(id: 3, offset: 9)
        index.append(id: 700, offset: 2_000)
        let snap = BeanstalkSnapshot(journalFrom: 9, journalEnd: 123_456, wakeupsFrom: 77, nextID: 200_001, idLease: 210_000, cold: cold, index: index)
        let bytes = snap.encoded()
        let back = try BeanstalkSnapshot(decoding: bytes)
        #expect(back.journalFrom == 9 && back.journalEnd == 123_456 && back.wakeupsFrom == 77 && back.nextID == 200_001 && back.idLease == 210_000)
        #expect(back.index == index)
        #expect(back.cold.count == cold.count)
        var pairs: [String] = [], again: [String] = []
        cold.forEach { pairs.append("\($0) \($1) \($2)") }
        back.cold.forEach { again.append("\($0) \($1) \($2)") }
        #expect(pairs == again)
        for at in [0, 4, 5, 20, bytes.count / 2, bytes.count - 1] {
            var bad = bytes
            bad[at] ^= 0x40
            #expect(throws: BeanstalkSnapshot.Unreadable.self) { try BeanstalkSnapshot(decoding: bad) }
        }
        #expect(throws: BeanstalkSnapshot.Unreadable.self) { try BeanstalkSnapshot(decoding: Array(bytes.prefix(100))) }
    }

    @Test func theSecondsWithColdJobsComeOnceEachRisingHoweverFarApart() {
        var near = BeanstalkColdJobs()
        for (id, due) in [(1, 50), (2, 7), (70_000, 50), (70_001, 9), (3, 7)] as [(UInt64, UInt32)] { _ = near.insert(id, tube: "t", dueSecond: due) }
        #expect(near.dueSeconds() == [7, 9, 50])
        var far = BeanstalkColdJobs()
        for (id, due) in [(1, UInt32.max - 1), (2, 3), (3, 1 << 25), (4, 3)] as [(UInt64, UInt32)] { _ = far.insert(id, tube: "t", dueSecond: due) }
        #expect(far.dueSeconds() == [3, 1 << 25, UInt32.max - 1], "spread past the bitmap's range")
        #expect(BeanstalkColdJobs().dueSeconds().isEmpty)
    }
}
