import Foundation
import Testing

@testable import ChimeSchedule

@Suite struct TimeZoneRulesTests {
    @Test func unknownIdentifiersAreATypedError() {
        for identifier in ["Nowhere/Foo", "", "america/new_york ", String(repeating: "Europe/", count: 20)] {
            #expect(throws: UnknownTimeZone(identifier: identifier)) { try TimeZoneRules(identifier: identifier) }
        }
        #expect(UnknownTimeZone(identifier: "Mars/Base").description.contains("Mars/Base"))
    }

    @Test func utcIsTheDefaultAndHasNoOffset() throws {
        let utc = try TimeZoneRules()
        #expect(utc == TimeZoneRules.utc && utc.identifier == "UTC")
        #expect(utc.utcOffsetSeconds(atMs: utcMs("2026-07-01T00:00:00Z")) == 0)
        #expect(utc.resolve(localMs: 1_234_567) == .unique(1_234_567))
    }

    @Test func offsetsFollowTheZone() throws {
        let newYork = try TimeZoneRules(identifier: "America/New_York")
        #expect(newYork.utcOffsetSeconds(atMs: utcMs("2026-01-15T12:00:00Z")) == -5 * 3_600)
        #expect(newYork.utcOffsetSeconds(atMs: utcMs("2026-03-08T06:59:59Z")) == -5 * 3_600)
        #expect(newYork.utcOffsetSeconds(atMs: utcMs("2026-03-08T07:00:00Z")) == -4 * 3_600)
        #expect(newYork.localMs(atMs: utcMs("2026-07-01T16:00:00Z")) == utcMs("2026-07-01T12:00:00Z"))
        let kolkata = try TimeZoneRules(identifier: "Asia/Kolkata")
        #expect(kolkata.utcOffsetSeconds(atMs: utcMs("2026-03-08T07:00:00Z")) == 19_800)
        let lordHowe = try TimeZoneRules(identifier: "Australia/Lord_Howe")
        #expect(lordHowe.utcOffsetSeconds(atMs: utcMs("2026-04-04T14:59:59Z")) == 11 * 3_600)
        #expect(lordHowe.utcOffsetSeconds(atMs: utcMs("2026-04-04T15:00:00Z")) == 10 * 3_600 + 1_800)
    }

    /// Local times are written as if they were UTC ("local ms").
    @Test func localTimesResolveToOneTwoOrNoInstants() throws {
        let newYork = try TimeZoneRules(identifier: "America/New_York")
        #expect(newYork.resolve(localMs: utcMs("2026-07-01T12:00:00Z")) == .unique(utcMs("2026-07-01T16:00:00Z")))
        #expect(newYork.resolve(localMs: utcMs("2026-03-08T02:30:00Z")) == .skipped(nextValidMs: utcMs("2026-03-08T07:00:00Z")))
        #expect(newYork.resolve(localMs: utcMs("2026-03-08T03:00:00Z")) == .unique(utcMs("2026-03-08T07:00:00Z")))
        #expect(newYork.resolve(localMs: utcMs("2026-03-08T01:59:59Z")) == .unique(utcMs("2026-03-08T06:59:59Z")))
        let repeated = newYork.resolve(localMs: utcMs("2026-11-01T01:30:00.250Z"))
        #expect(repeated == .repeated(earlierMs: utcMs("2026-11-01T05:30:00.250Z"), laterMs: utcMs("2026-11-01T06:30:00.250Z")))
        #expect(repeated.firingInstantMs == utcMs("2026-11-01T05:30:00.250Z"))
        #expect(newYork.resolve(localMs: utcMs("2026-11-01T02:00:00Z")) == .unique(utcMs("2026-11-01T07:00:00Z")))

        let lordHowe = try TimeZoneRules(identifier: "Australia/Lord_Howe")
        #expect(lordHowe.resolve(localMs: utcMs("2026-10-04T02:15:00Z")) == .skipped(nextValidMs: utcMs("2026-10-03T15:30:00Z")))
        #expect(lordHowe.resolve(localMs: utcMs("2026-04-05T01:45:00Z"))
            == .repeated(earlierMs: utcMs("2026-04-04T14:45:00Z"), laterMs: utcMs("2026-04-04T15:15:00Z")))
    }

    @Test func instantsFarOutsideYears1To9999StillHaveAnOffset() throws {
        let berlin = try TimeZoneRules(identifier: "Europe/Berlin")
        for instant in [Int64.max, Int64.min, 0, -62_135_596_800_000] {
            #expect((-86_400...86_400).contains(berlin.utcOffsetSeconds(atMs: instant)))
        }
        #expect(berlin.table?.offset(at: Int64.max / 1_000) != nil)
    }

    @Test func zonesWithTheSameIdentifierAreEqualAndShareOneTable() throws {
        let a = try TimeZoneRules(identifier: "Europe/Berlin")
        let b = try TimeZoneRules(identifier: "Europe/Berlin")
        #expect(a == b && a.hashValue == b.hashValue)
        #expect(a.table === b.table)
        #expect(a != (try TimeZoneRules(identifier: "Europe/Paris")))
    }

    @Test func concurrentLookupsAgree() async throws {
        let zone = try TimeZoneRules(identifier: "Europe/Berlin")
        let instants = (0..<400).map { utcMs("2020-01-01T00:00:00Z") + Int64($0) * 5 * 86_400_000 }
        let expected = instants.map { Foundation.TimeZone(identifier: "Europe/Berlin")!.secondsFromGMT(for: Date(timeIntervalSince1970: TimeInterval($0) / 1_000)) }
        try await withThrowingTaskGroup(of: [Int].self) { group in
            for _ in 0..<8 {
                group.addTask { instants.map { zone.utcOffsetSeconds(atMs: $0) } }
            }
            for try await offsets in group { #expect(offsets == expected) }
        }
    }
}
