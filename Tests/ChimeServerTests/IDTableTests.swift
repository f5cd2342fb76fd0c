@testable import ChimeServer
import ChimeStore
import DequeModule
import Testing

/// The beanstalkd job table: a window of slots by id with the stragglers spilled to a
/// dictionary. It must answer exactly as a dictionary would, and its window must stay
/// bounded by the values it holds, whatever order ids come and go in.
@Suite struct IDTableTests {
    /// The window's bound: twice the values it holds, plus the slack.
    private func isBounded(_ t: IDTable<Int>) -> Bool {
        t.windowSlots <= IDTable<Int>.slack + 2 * t.count
    }

    @Test func valuesRetiredInIdOrderLeaveNoSlotsBehind() {
        var t = IDTable<Int>()
        for id in UInt64(1)...10_000 { t[id] = Int(id) }
        #expect(t.count == 10_000 && t.windowSlots == 10_000)
        for id in UInt64(1)...9_999 { t[id] = nil }
        #expect(t.count == 1 && t.windowSlots == 1)
        #expect(t[10_000] == 10_000 && t.lowestID == 10_000)
    }

    @Test func aStragglerMovesOutOfTheWindowAndIsStillFound() {
        var t = IDTable<Int>()
        for id in UInt64(1)...100_000 { t[id] = Int(id) }
        for id in UInt64(2)...100_000 { t[id] = nil }
        #expect(t.count == 1)
        #expect(t.windowSlots == 0, "the one value left moved to the dictionary as the window emptied behind it")
        #expect(t[1] == 1 && t.lowestID == 1)
        t[100_001] = 7
        #expect(t[100_001] == 7 && t[1] == 1 && t.count == 2 && t.lowestID == 1)
        t[1]! += 1
        #expect(t[1] == 2)
    }

    @Test func aWideGapBetweenIdsIsNotFilledWithSlots() {
        var t = IDTable<Int>()
        t[1] = 1
        t[10_000_000] = 2
        #expect(t.windowSlots == 1)
        #expect(t[1] == 1 && t[10_000_000] == 2 && t[5] == nil)
        #expect(Set(t.keys) == [1, 10_000_000])
    }

    @Test func anIdBelowTheWindowIsHeldAndFound() {
        var t = IDTable<Int>()
        for id in UInt64(1_000)...1_010 { t[id] = 0 }
        t[3] = 3
        #expect(t[3] == 3 && t.lowestID == 3 && t.count == 12)
        t[3] = nil
        #expect(t[3] == nil && t.lowestID == 1_000 && t.count == 11)
    }

    @Test func answersAsADictionaryDoesUnderRandomTraffic() {
        var rng = SplitMix64(seed: 20)
        var t = IDTable<Int>()
        var model: [UInt64: Int] = [:]
        var held: Deque<UInt64> = []  // the ids in model, oldest put first
        var next: UInt64 = 1
        for step in 0..<100_000 {
            let r = rng.next() % 100
            if r < 45 {
                // A new id, sometimes after a run of ids that are never held (cold jobs).
                if rng.next() % 50 == 0 { next += rng.next() % 20_000 }
                t[next] = step
                model[next] = step
                held.append(next)
                next += 1
            } else if r < 85, !held.isEmpty {
                // Retire one: mostly among the oldest few, sometimes any.
                let span = rng.next() % 4 == 0 ? held.count : Swift.min(8, held.count)
                let id = held.remove(at: Int(rng.next() % UInt64(span)))
                t[id] = nil
                model[id] = nil
            } else if r < 95, !held.isEmpty {
                let id = held[Int(rng.next() % UInt64(held.count))]
                t[id]! += 1
                model[id]! += 1
            } else {
                // Put back below everything handed out (a cold job warmed).
                let id = 1 + rng.next() % next
                if model[id] == nil { held.append(id) }
                t[id] = step
                model[id] = step
            }
            if step % 1_000 == 0 {
                #expect(isBounded(t), "step \(step): \(t.windowSlots) slots for \(t.count) values")
            }
        }
        #expect(t.count == model.count)
        #expect(Set(t.keys) == Set(model.keys))
        for (id, v) in model { #expect(t[id] == v) }
        #expect(t.lowestID == model.keys.min())
        #expect(isBounded(t))
    }
}
