import ChimeStore
import Testing

@testable import ChimeBroker

/// The delivery window on its own: a pure state machine, driven with explicit times.
@Suite struct DeliveryWindowTests {
    /// Admits and leases the next new offset.
    @discardableResult
    private func deliverNext(_ w: inout DeliveryWindow, key: UInt64? = nil, member: UInt64 = 1, deadline: Int64 = 100) -> (offset: Int64, lease: UInt32)? {
        let offset = w.admitNext()
        guard let l = w.lease(offset, keyHash: key, member: member, deadline: deadline) else { return nil }
        return (offset, l.lease)
    }

    @Test func theFrontierMovesOnlyOverAContiguousAckedPrefix() throws {
        var w = DeliveryWindow(frontier: 10)
        let a = deliverNext(&w)!, b = deliverNext(&w)!, c = deliverNext(&w)!
        #expect(w.inFlight == 3)
        #expect(try w.ack(b.offset, lease: b.lease) == false)
        #expect(try w.ack(c.offset, lease: c.lease) == false)
        #expect(w.frontier == 10 && w.ackedAbove == 2 && w.ackedOffsets == [11, 12])
        #expect(try w.ack(a.offset, lease: a.lease) == true)
        #expect(w.frontier == 13 && w.ackedAbove == 0 && w.span == 0 && w.inFlight == 0)
    }

    @Test func refusalsSayWhy() throws {
        var w = DeliveryWindow(frontier: 0)
        let a = deliverNext(&w, deadline: 50)!
        let b = deliverNext(&w, deadline: 50)!
        try w.ack(a.offset, lease: a.lease)
        #expect(throws: DeliveryWindow.Refusal.alreadyAcked) { try w.check(a.offset, lease: a.lease) }  // below the frontier now
        #expect(throws: DeliveryWindow.Refusal.unknown) { try w.check(7, lease: 1) }  // never read
        #expect(throws: DeliveryWindow.Refusal.unknown) { try w.check(b.offset, lease: b.lease + 5) }  // a lease never given
        #expect(w.expire(now: 50).map(\.offset) == [b.offset])
        #expect(throws: DeliveryWindow.Refusal.expired) { try w.check(b.offset, lease: b.lease) }
        // Delivered again under a new lease: the old receipt stays refused, the new one works.
        #expect(w.nextWaiting() == b.offset)
        let again = w.lease(b.offset, keyHash: nil, member: 2, deadline: 200)!
        #expect(again.attempt == 2)
        #expect(throws: DeliveryWindow.Refusal.expired) { try w.check(b.offset, lease: b.lease) }
        try w.ack(b.offset, lease: again.lease)
        #expect(throws: DeliveryWindow.Refusal.alreadyAcked) { try w.check(b.offset, lease: again.lease) }
    }

    @Test func extendingALeaseKeepsItAndStaleTimersAreDropped() throws {
        var w = DeliveryWindow(frontier: 0)
        let a = deliverNext(&w, deadline: 10)!
        let b = deliverNext(&w, deadline: 10)!
        try w.extend(a.offset, lease: a.lease, to: 30)
        try w.ack(b.offset, lease: b.lease)
        #expect(w.expire(now: 10).isEmpty, "a's deadline moved; b was acked")
        #expect(w.expire(now: 30).map(\.offset) == [a.offset])
        #expect(w.inFlight == 0)
    }

    @Test func keyOrderingHoldsTheNextOfAKeyUntilTheFirstIsDone() throws {
        var w = DeliveryWindow(frontier: 0, keyOrdering: true)
        let a = deliverNext(&w, key: 7)!
        #expect(deliverNext(&w, key: 7) == nil, "same key: held back")
        let c = deliverNext(&w, key: 8)!
        #expect(w.inFlight == 2)
        #expect(w.nextWaiting() == nil)
        try w.ack(a.offset, lease: a.lease)
        #expect(w.nextWaiting() == 1, "released when the key is free")
        #expect(w.lease(1, keyHash: 7, member: 1, deadline: 100) != nil)
        try w.ack(c.offset, lease: c.lease)
    }

    @Test func anExpiredMessageStaysFirstOfItsKey() throws {
        var w = DeliveryWindow(frontier: 0, keyOrdering: true)
        _ = deliverNext(&w, key: 7, deadline: 10)!
        #expect(deliverNext(&w, key: 7) == nil)
        _ = w.expire(now: 10)
        #expect(w.nextWaiting() == 0, "the expired one goes again before the next of its key")
        #expect(w.lease(0, keyHash: 7, member: 1, deadline: 100)?.attempt == 2)
        #expect(w.nextWaiting() == nil)
    }

    @Test func retentionPassingALeasedMessageFreesItsKey() throws {
        var w = DeliveryWindow(frontier: 0, keyOrdering: true)
        _ = deliverNext(&w, key: 7)!
        #expect(deliverNext(&w, key: 7) == nil)
        w.skip(to: 1)  // offset 0 deleted by retention while leased
        #expect(w.frontier == 1 && w.inFlight == 0)
        #expect(w.nextWaiting() == 1, "the held-back message of that key goes on")
        w.skip(to: 1_000_000)
        #expect(w.frontier == 1_000_000 && w.span == 0)
    }

    @Test func aRestoredWindowRedeliversTheGapsBelowTheHighestAck() throws {
        var w = DeliveryWindow(frontier: 5, acked: [3, 6, 8])
        #expect(w.frontier == 5 && w.readEnd == 9)
        #expect(w.ackedOffsets == [6, 8])
        var waiting: [Int64] = []
        while let o = w.nextWaiting() { waiting.append(o) }
        #expect(waiting == [5, 7])
    }

    @Test func revokingEndsEveryLease() throws {
        var w = DeliveryWindow(frontier: 0)
        let a = deliverNext(&w)!
        _ = deliverNext(&w)!
        #expect(w.revokeAll() == 2)
        #expect(w.inFlight == 0)
        #expect(throws: DeliveryWindow.Refusal.expired) { try w.check(a.offset, lease: a.lease) }
    }

    /// Random operations: the invariants hold after every step.
    @Test(arguments: [1, 2, 3, 4] as [UInt64]) func invariantsUnderRandomOperations(seed: UInt64) throws {
        var rng = SplitMix64(seed: seed)
        var w = DeliveryWindow(frontier: 0, keyOrdering: true)
        var live: [Int64: UInt32] = [:]  // offset → lease the "member" holds
        var now: Int64 = 0
        var acked = Set<Int64>()
        for _ in 0..<5_000 {
            now += Int64(rng.next() % 3)
            switch rng.next() % 6 {
            case 0, 1:
                let offset = w.admitNext()
                if let l = w.lease(offset, keyHash: rng.next() % 5, member: 1, deadline: now + 20) { live[offset] = l.lease }
            case 2:
                if let o = w.nextWaiting() {
                    if let l = w.lease(o, keyHash: w.slot(o)!.keyed ? w.slot(o)!.keyHash : rng.next() % 5, member: 1, deadline: now + 20) {
                        live[o] = l.lease
                    }
                }
            case 3:
                if let (o, l) = live.randomElement(using: &rng) {
                    live[o] = nil
                    if (try? w.ack(o, lease: l)) != nil { acked.insert(o) }
                }
            case 4:
                for e in w.expire(now: now) { live[e.offset] = nil }
            default:
                if let (o, l) = live.randomElement(using: &rng) {
                    live[o] = nil
                    try? w.release(o, lease: l)
                }
            }
            // Invariants.
            let leased = (0..<w.span).filter { w.slots[$0].state == .leased }
            #expect(leased.count == w.inFlight)
            let keys = leased.map { w.slots[$0].keyHash }
            #expect(Set(keys).count == keys.count, "two messages of one key in flight")
            #expect(w.slots.first.map { $0.state != .acked } ?? true, "the frontier stops at the first unacked offset")
            #expect(acked.allSatisfy { $0 < w.frontier || w.slot($0)?.state == .acked })
        }
    }
}
