import Logging
import Testing

@testable import ChimeWheel

/// `WheelState` is a pure reducer: these tests drive it with entries made up in memory and
/// a list source that is a dictionary, no timer log at all.
@Suite struct WheelStateTests {
    /// Slot lists kept in memory, as the timer log would hold them.
    final class MemoryLists: TimerListSource {
        var entries: [Int64: TimerEntryFields] = [:]
        var nextPosition: Int64 = 0

        func walk(from head: Int64, floor: Int64, stop: Int64, limit: Int) -> ListWalk {
            var out: [TimerEntryFields] = []
            var at = head
            while at != -1 && at != stop && at >= floor && out.count < limit, let e = entries[at] {
                out.append(e)
                at = e.next
            }
            return ListWalk(entries: out, rest: at >= floor ? at : -1, damaged: false)
        }

        func messageSize(at position: Int64) -> Int? { entries[position]?.size }
    }

    let geometry = WheelGeometry.slots64
    let lists = MemoryLists()

    func state() -> WheelState { WheelState(geometry: geometry, chunkShift: 20, logger: Logger(label: "test")) }

    /// Appends a message due at `due` to the list of the slot `state.placement` picks, as
    /// the shell would, and applies it.
    @discardableResult
    func schedule(_ due: Int64, size: Int = 100, into s: inout WheelState) -> Int64 {
        let home = s.placement(due)
        let head = s.slot(at: home)?.head ?? -1
        let e = TimerEntryFields(
            kind: .message, position: lists.nextPosition, level: home.level, slot: geometry.slot(level: home.level, time: home.start),
            dueAt: due, next: head, reference: s.time, size: size)
        lists.entries[e.position] = e
        lists.nextPosition += Int64(size)
        s.apply(e, source: lists)
        return e.position
    }

    func marker(_ kind: TimerEntry.Kind, _ address: SlotAddress, reference: Int64) -> TimerEntryFields {
        defer { lists.nextPosition += 48 }
        return TimerEntryFields(
            kind: kind, position: lists.nextPosition, level: address.level, slot: geometry.slot(level: address.level, time: address.start),
            dueAt: address.start, next: -1, reference: reference, size: 48)
    }

    @Test func aScheduledMessageIsPendingInTheSlotItsDueTimeSelects() {
        var s = state()
        s.advanceTime(to: 1_000)
        schedule(1_005, into: &s)
        schedule(1_005, into: &s)
        #expect(s.pendingCount == 2)
        #expect(s.nextExpiration()?.address == SlotAddress(level: 0, start: 1_005))
        #expect(s.live.total == 200)
        s.checkInvariants()
    }

    @Test func aFiredMarkerRetiresTheSlotAndNumbersTheHandOver() {
        var s = state()
        s.advanceTime(to: 1_000)
        schedule(1_005, into: &s)
        s.apply(marker(.slotFired, SlotAddress(level: 0, start: 1_005), reference: 1), source: lists)
        #expect(s.pendingCount == 0)
        #expect(s.nextExpiration() == nil)
        #expect(s.nextFireSequence == 2)
        #expect(s.time == 1_005)
        #expect(s.live.total == 0, "the message's bytes are dead once it fired")
        s.checkInvariants()
    }

    @Test func aSlotMovedWholeKeepsItsListUnderItsNewAddress() {
        var s = state()
        s.advanceTime(to: 0)
        let due: Int64 = 3 * 4096 + 7  // a level-2 slot: two spans ahead at level 1
        schedule(due, into: &s)
        schedule(due, into: &s)
        let from = s.nextExpiration()!.address
        #expect(from.level == 2)
        let target = SlotAddress(level: 0, start: due)
        var move = marker(.slotMoved, from, reference: target.start)
        move.next = 0
        s.apply(move, source: lists)
        #expect(s.slot(at: from) == nil)
        #expect(s.slot(at: target)?.count == 2)
        #expect(s.time == from.start, "a move at the slot's start means the wheel reached it")
        s.checkInvariants()
    }

    @Test func anEntryNamingASlotItsDueTimeDoesNotFallInIsSkipped() {
        var s = state()
        var e = TimerEntryFields(kind: .message, position: 0, level: 0, slot: 9, dueAt: 5, next: -1, reference: 0, size: 100)
        lists.entries[0] = e
        s.apply(e, source: lists)
        #expect(s.pendingCount == 0)
        e.level = 12  // beyond the geometry's 8 levels
        s.apply(e, source: lists)
        #expect(s.pendingCount == 0)
        s.checkInvariants()
    }

    @Test func aMarkerForALaterTimeClearsSlotsThatLostTheirOwnMarker() {
        var s = state()
        schedule(10, into: &s)
        schedule(20, into: &s)
        // The marker of the slot at 10 was lost to damage; the one at 20 says time passed it.
        s.apply(marker(.slotFired, SlotAddress(level: 0, start: 20), reference: 2), source: lists)
        #expect(s.pendingCount == 0, "the slot at 10 must not fire again")
        #expect(s.nextFireSequence == 3)
    }
}
