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
        var w = DeliveryWindow(frontier: 0, keyLimit: 1)
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
        var w = DeliveryWindow(frontier: 0, keyLimit: 1)
        _ = deliverNext(&w, key: 7, deadline: 10)!
        #expect(deliverNext(&w, key: 7) == nil)
        _ = w.expire(now: 10)
        #expect(w.nextWaiting() == 0, "the expired one goes again before the next of its key")
        #expect(w.lease(0, keyHash: 7, member: 1, deadline: 100)?.attempt == 2)
        #expect(w.nextWaiting() == nil)
    }

    @Test func retentionPassingALeasedMessageFreesItsKey() throws {
        var w = DeliveryWindow(frontier: 0, keyLimit: 1)
        _ = deliverNext(&w, key: 7)!
        #expect(deliverNext(&w, key: 7) == nil)
        w.skip(to: 1)  // offset 0 deleted by retention while leased
        #expect(w.frontier == 1 && w.inFlight == 0)
        #expect(w.nextWaiting() == 1, "the held-back message of that key goes on")
        w.skip(to: 1_000_000)
        #expect(w.frontier == 1_000_000 && w.span == 0)
    }

    /// Found by the random model with retention: retention up to an offset just below an
    /// acked one left the frontier on that acked slot (committed position understated until
    /// the next ack).
    @Test func retentionUpToAnAckedOffsetMovesTheFrontierPastIt() throws {
        var w = DeliveryWindow(frontier: 0)
        _ = deliverNext(&w)!
        let b = deliverNext(&w)!
        let c = deliverNext(&w)!
        try w.ack(b.offset, lease: b.lease)
        w.skip(to: 1)  // offset 0 deleted by retention while leased; 1 is acked
        #expect(w.frontier == 2 && w.ackedAbove == 0 && w.ackedOffsets.isEmpty && w.span == 1)
        #expect(w.inFlight == 1)
        #expect(try w.ack(c.offset, lease: c.lease) == true)
        #expect(w.frontier == 3 && w.span == 0)
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
    /// Leases expire in deadline order whatever order they were made in: one made after an
    /// extension past its deadline (its timer out of the queue's order) comes up first.
    @Test func leasesExpireInDeadlineOrderWhateverOrderTheyWereMadeIn() throws {
        var w = DeliveryWindow(frontier: 0)
        let a = deliverNext(&w, deadline: 10)!
        try w.extend(a.offset, lease: a.lease, to: 50)
        let b = deliverNext(&w, deadline: 20)!
        let c = deliverNext(&w, deadline: 60)!
        #expect(w.nextDeadline == 10, "a's first timer, stale")
        #expect(w.expire(now: 19).isEmpty)
        #expect(w.nextDeadline == 20)
        #expect(w.expire(now: 100).map(\.offset) == [b.offset, a.offset, c.offset])
        #expect(w.nextDeadline == nil && w.inFlight == 0)
    }

    @Test(arguments: [1, 2, 3, 4] as [UInt64]) func invariantsUnderRandomOperations(seed: UInt64) throws {
        var rng = SplitMix64(seed: seed)
        var w = DeliveryWindow(frontier: 0, keyLimit: 1)
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
            w.checkInvariants()
            let leased = (0..<w.span).filter { w.slots[$0].state == .leased }
            #expect(leased.count == w.inFlight)
            let keys = leased.map { w.slots[$0].keyHash }
            #expect(Set(keys).count == keys.count, "two messages of one key in flight")
            #expect(w.slots.first.map { $0.state != .acked } ?? true, "the frontier stops at the first unacked offset")
            #expect(acked.allSatisfy { $0 < w.frontier || w.slot($0)?.state == .acked })
        }
    }

    /// The random model again, with what the group does besides ack/expire/release:
    /// retention passing the window (`skip`), offsets handed back after a fill deferred them
    /// (`putBack`), messages parked while moved to the wheel or the dead-letter topic and
    /// then acked or unparked, acks of offsets the window never admitted, revocation. Every
    /// offset `nextWaiting` hands out can be leased (in the window, waiting), and each leased
    /// slot is the one lease the member holds: nothing is delivered twice while leased.
    @Test(arguments: [11, 12, 13, 14] as [UInt64]) func invariantsUnderRandomOperationsWithRetentionAndMoves(seed: UInt64) throws {
        var rng = SplitMix64(seed: seed)
        var w = DeliveryWindow(frontier: 0, keyLimit: 1)
        var live: [Int64: UInt32] = [:]  // offset → lease the member holds
        var parked = Set<Int64>()
        var acked = Set<Int64>()
        var now: Int64 = 0
        func lease(_ offset: Int64, key: UInt64) {
            #expect(w.slot(offset)?.state == .waiting, "handed out \(offset), not waiting in [\(w.frontier), \(w.readEnd))")
            if let l = w.lease(offset, keyHash: key, member: 1, deadline: now + 20) { live[offset] = l.lease }
        }
        for _ in 0..<5_000 {
            now += Int64(rng.next() % 3)
            switch rng.next() % 12 {
            case 0, 1, 2:
                lease(w.admitNext(), key: rng.next() % 5)
            case 3:
                // One fill's redeliveries; what it deferred (held by a key leased from the
                // other log) goes back in order when the fill ends.
                var deferred: [Int64] = []
                for _ in 0..<(1 + rng.next() % 3) {
                    guard let o = w.nextWaiting() else { break }
                    if rng.next() % 4 == 0 {
                        deferred.append(o)
                    } else {
                        lease(o, key: w.slot(o)!.keyed ? w.slot(o)!.keyHash : rng.next() % 5)
                    }
                }
                for o in deferred.reversed() { w.putBack(o) }
            case 4, 5:
                if let (o, l) = live.randomElement(using: &rng) {
                    live[o] = nil
                    if (try? w.ack(o, lease: l)) != nil { acked.insert(o) }
                }
            case 6:
                for e in w.expire(now: now) { live[e.offset] = nil }
            case 7:
                if let (o, l) = live.randomElement(using: &rng) {
                    live[o] = nil
                    try? w.release(o, lease: l)
                }
            case 8:
                // Nack with a delay or term: parked, then moved (acked) or put back (unparked).
                if let (o, l) = live.randomElement(using: &rng) {
                    live[o] = nil
                    if (try? w.park(o, lease: l)) != nil { parked.insert(o) }
                } else if let o = parked.randomElement(using: &rng) {
                    parked.remove(o)
                    if rng.next() % 3 == 0 {
                        w.unpark(o)
                    } else {
                        w.markAcked(o)
                        acked.insert(o)
                    }
                }
            case 9:
                // Retention: the log now starts a little above the frontier, at times past
                // everything read so far.
                let start = w.frontier + Int64(rng.next() % UInt64(w.span + 3))
                w.skip(to: start)
                for o in live.keys where o < start { live[o] = nil }
                for o in parked where o < start { acked.insert(o) }
                #expect(w.frontier >= start && w.readEnd >= w.frontier)
            case 10:
                // An offset the window has not read: acking it changes nothing.
                let before = (w.frontier, w.readEnd, w.ackedAbove)
                #expect(w.markAcked(w.readEnd + Int64(rng.next() % 3)) == false)
                #expect(before == (w.frontier, w.readEnd, w.ackedAbove))
            default:
                if rng.next() % 8 == 0 {
                    _ = w.revokeAll()
                    live = [:]
                }
            }
            // Invariants.
            w.checkInvariants()
            let leased = (0..<w.span).filter { w.slots[$0].state == .leased }
            #expect(leased.count == w.inFlight)
            #expect(Set(leased.map { w.frontier + Int64($0) }) == Set(live.keys), "leased slots are the leases the member holds")
            for (o, l) in live { #expect((try? w.check(o, lease: l)) != nil) }
            let keys = leased.map { w.slots[$0].keyHash }
            #expect(Set(keys).count == keys.count, "two messages of one key in flight")
            #expect(w.slots.first.map { $0.state != .acked } ?? true, "the frontier stops at the first unacked offset")
            #expect(w.ackedAbove == w.slots.filter { $0.state == .acked }.count)
            #expect(acked.allSatisfy { $0 < w.frontier || w.slot($0)?.state == .acked })
        }
    }

    @Test func aKeyLimitAboveOneLetsThatManyOfAKeyOutAndTheNextGoesWhenAnyIsDone() throws {
        var w = DeliveryWindow(frontier: 0, keyLimit: 2)
        let a = deliverNext(&w, key: 7)!
        let b = deliverNext(&w, key: 7)!
        #expect(deliverNext(&w, key: 7) == nil, "a third of the key waits")
        #expect(w.keyCount(7) == 2)
        w.checkInvariants()
        // An expired one goes back without keeping its place: no order to keep above one.
        _ = w.expire(now: 100)
        #expect(w.keyCount(7) == 0)
        #expect(Set([w.nextWaiting(), w.nextWaiting(), w.nextWaiting()].compactMap { $0 }) == [0, 1, 2])
        _ = (a, b)
        w.checkInvariants()
    }

    @Test func anAckAtTheKeyLimitReleasesTheNextHeldBack() throws {
        var w = DeliveryWindow(frontier: 0, keyLimit: 2)
        let a = deliverNext(&w, key: 7)!
        _ = deliverNext(&w, key: 7)!
        #expect(deliverNext(&w, key: 7) == nil)
        #expect(w.nextWaiting() == nil)
        try w.ack(a.offset, lease: a.lease)
        #expect(w.nextWaiting() == 2)
        #expect(w.lease(2, keyHash: 7, member: 1, deadline: 100) != nil)
        w.checkInvariants()
    }

    @Test func raisingTheKeyLimitLetsWhatWasHeldBackGo() throws {
        var w = DeliveryWindow(frontier: 0, keyLimit: 1)
        _ = deliverNext(&w, key: 7)!
        #expect(deliverNext(&w, key: 7) == nil)
        #expect(deliverNext(&w, key: 7) == nil)
        w.setKeyLimit(3)
        #expect(w.nextWaiting() == 1)
        #expect(w.lease(1, keyHash: 7, member: 1, deadline: 100) != nil)
        #expect(w.nextWaiting() == 2)
        #expect(w.lease(2, keyHash: 7, member: 1, deadline: 100) != nil)
        #expect(w.keyCount(7) == 3)
        w.checkInvariants()
        w.setKeyLimit(nil)
        #expect(w.keyCount(7) == 0, "without a limit no key is counted")
        w.checkInvariants()
    }

    @Test func aHeldMessageIsNotOfferedBeforeItsTimeAndThenFirstInOffsetOrder() throws {
        var w = DeliveryWindow(frontier: 0)
        let first = w.admitNext(), second = w.admitNext(), third = w.admitNext()
        w.hold(second, until: 50)
        w.hold(first, until: 50)
        _ = w.lease(third, keyHash: nil, member: 1, deadline: 100)
        w.releaseHeld(now: 49)
        #expect(w.nextWaiting() == nil)
        w.releaseHeld(now: 50)
        #expect(w.nextWaiting() == first)
        #expect(w.nextWaiting() == second)
        #expect(w.nextWaiting() == nil)
    }
}
