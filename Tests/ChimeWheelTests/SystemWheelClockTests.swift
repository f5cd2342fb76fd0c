import ChimeTestSupport
import ChimeWheel
import Testing

/// Broker time: set from the wall clock once, then advancing with the steady clock, so a
/// step of the wall clock moves no due time; only the difference between the two changes.
@Suite struct SystemWheelClockTests {
    @Test func brokerTimeStartsAtTheWallClockAndAdvancesWithTheSteadyOne() {
        let r = ClockReadings(wallMilliseconds: 1_800_000_000_000)
        let clock = r.clock()
        #expect(clock.now() == 1_800_000_000_000)
        r.elapse(ms: 30_000)
        #expect(clock.now() == 1_800_000_030_000)
        #expect(clock.wallNow() == clock.now())
    }

    @Test func aWallClockSteppedEitherWayMovesNoBrokerTime() {
        let r = ClockReadings(wallMilliseconds: 1_800_000_000_000)
        let clock = r.clock()
        r.stepWall(ms: -3_600_000)
        #expect(clock.now() == 1_800_000_000_000, "a step back")
        #expect(clock.now() - clock.wallNow() == 3_600_000, "the wall clock is now an hour behind")
        r.elapse(ms: 10_000)
        r.stepWall(ms: 7_200_000)
        #expect(clock.now() == 1_800_000_010_000, "a step forward")
        #expect(clock.wallNow() - clock.now() == 3_600_000)
    }

    @Test func holdingAtLeastATimeMovesBrokerTimeForwardNeverBack() {
        let r = ClockReadings(wallMilliseconds: 1_800_000_000_000)
        let clock = r.clock()
        #expect(clock.holdAtLeast(1_799_000_000_000) == 0, "an earlier time changes nothing")
        #expect(clock.now() == 1_800_000_000_000)
        #expect(clock.holdAtLeast(1_800_003_600_000) == 3_600_000)
        #expect(clock.now() == 1_800_003_600_000)
        r.elapse(ms: 1_000)
        #expect(clock.now() == 1_800_003_601_000, "and goes on from there with the steady clock")
        #expect(clock.holdAtLeast(1_800_003_600_500) == 0)
    }

    @Test func theSystemClockIsNearTheWallClockAndNeverGoesBack() {
        let clock = SystemWheelClock()
        var last = clock.now()
        #expect(abs(last - clock.wallNow()) < 1_000)
        for _ in 0..<10_000 {
            let t = clock.now()
            #expect(t >= last)
            last = t
        }
    }
}
