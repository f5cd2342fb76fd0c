import ChimeStore
import Testing

@testable import ChimeWheel

@Suite struct WheelGeometryTests {
    static let geometries = [WheelGeometry.slots64, .slots256, WheelGeometry(slotBits: 2, levels: 5)]

    @Test(arguments: geometries)
    func reachesAtLeastTenYearsOfAbsoluteTime(geometry: WheelGeometry) {
        if geometry.slotBits >= 6 {
            let tenYearsFromNow: Int64 = 1_800_000_000_000 + 10 * 366 * 86_400_000
            #expect(geometry.limit > tenYearsFromNow * 100, "decades of headroom past 2026")
        }
        #expect(geometry.levelSpan(geometry.levels - 1) == geometry.limit)
    }

    /// Exhaustive over a small wheel: every (now, due) pair places the entry so that
    /// (a) due lies inside the slot's span, (b) the slot is not the one `now` is in unless
    /// the level is 0, and (c) the level is the lowest that can hold it.
    @Test func placementIsExactForEveryPairOfTimesOnASmallWheel() {
        let g = WheelGeometry(slotBits: 2, levels: 4)  // 4 slots, 256 ms of range
        for now in Int64(0)..<g.limit {
            for due in now..<g.limit {
                let level = g.level(now: now, due: due)
                let slot = g.slot(level: level, time: due)
                let start = g.slotStart(level: level, slot: slot, now: now)
                #expect(start <= due && due < start + g.slotSpan(level), "now \(now) due \(due)")
                if level > 0 {
                    #expect(start > now, "a higher-level slot must start after now (now \(now) due \(due))")
                    // One level lower could not hold it: due is outside now's lower-level span.
                    #expect(due >= (now & ~(g.levelSpan(level - 1) - 1)) + g.levelSpan(level - 1))
                } else {
                    #expect(start == due)
                }
            }
        }
    }

    @Test(arguments: geometries)
    func levelBoundariesAreWhereTheSpansEnd(geometry g: WheelGeometry) {
        let now: Int64 = g.limit / 3 & ~(g.levelSpan(g.levels - 2) - 1)  // aligned to a top-level slot
        #expect(g.levelSpan(g.levels - 2) + now <= g.limit)
        #expect(g.level(now: now, due: now) == 0)
        for level in 0..<g.levels {
            let lastOfSpan = now + g.levelSpan(level) - 1
            guard lastOfSpan < g.limit else { break }
            #expect(g.level(now: now, due: lastOfSpan) == level, "level \(level) ends at its span")
            if level + 1 < g.levels && lastOfSpan + 1 < g.limit {
                #expect(g.level(now: now, due: lastOfSpan + 1) == level + 1, "the next ms needs level \(level + 1)")
            }
        }
    }

    @Test func overdueEntriesGoToLevelZeroAtNow() {
        let g = WheelGeometry.slots64
        #expect(g.level(now: 1_000_000, due: 5) == 0)
        #expect(g.level(now: 1_000_000, due: 999_999) == 0)
    }

    @Test func realisticDelaysLandOnTheExpectedLevels() {
        let g = WheelGeometry.slots64
        let now: Int64 = 1_764_000_000_000 & ~((1 << 36) - 1)  // aligned so spans start at now
        #expect(g.level(now: now, due: now + 30) == 0)
        #expect(g.level(now: now, due: now + 30_000) == 2)  // 30 s: 4,096 ≤ 30,000 < 262,144
        #expect(g.level(now: now, due: now + 48 * 3_600_000) == 4)  // 48 h
        #expect(g.level(now: now, due: now + 10 * 365 * 86_400_000) == 6)  // 10 years
    }

    @Test(arguments: [64, 256, 32])
    func bitmapFindsTheNextOccupiedSlot(slots: Int) {
        var bitmap = OccupancyBitmap(slots: slots)
        #expect(bitmap.isEmpty)
        #expect(bitmap.next(atOrAfter: 0) == nil)
        var rng = SplitMix64(seed: UInt64(slots))
        var occupied = Set<Int>()
        for _ in 0..<(slots / 4) {
            let s = Int(rng.next() % UInt64(slots))
            bitmap.insert(s)
            occupied.insert(s)
        }
        for start in 0...slots {
            #expect(bitmap.next(atOrAfter: start) == occupied.filter { $0 >= start }.min(), "from \(start)")
        }
        for s in occupied { bitmap.remove(s) }
        #expect(bitmap.isEmpty && bitmap.count == 0)
    }
}
