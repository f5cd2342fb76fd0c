import ChimeStore
import Testing

@testable import ChimeBroker

/// Membership and assignment on their own: a pure state machine.
@Suite struct GroupMembershipTests {
    private func partitions(_ topics: [(String, UInt32, Int)]) -> [(key: PartitionKey, topic: String)] {
        topics.flatMap { t in (0..<t.2).map { (PartitionKey(topicID: t.1, partition: $0), t.0) } }
    }

    private func member(_ id: UInt64, _ topics: Set<String> = ["a"]) -> GroupMembership.Member {
        .init(id: id, name: "m\(id)", topics: topics, lastSeen: 0)
    }

    @Test func everyPartitionHasOneEligibleOwnerAndLoadsDifferByAtMostOne() {
        var g = GroupMembership()
        let all = partitions([("a", 1, 10)])
        for id in 1...3 as ClosedRange<UInt64> { g.join(member(id)) }
        _ = g.rebalance(all)
        #expect(g.assignment.count == 10)
        let loads = (1...3 as ClosedRange<UInt64>).map { g.partitions(of: $0).count }
        #expect(loads.max()! - loads.min()! <= 1)
    }

    @Test func assignmentIsSticky() {
        var g = GroupMembership()
        let all = partitions([("a", 1, 12)])
        g.join(member(1))
        g.join(member(2))
        _ = g.rebalance(all)
        let before = g.assignment
        g.join(member(3))
        let changes = g.rebalance(all)
        #expect(changes.count == 4, "only what the newcomer needs moves")
        #expect(changes.allSatisfy { g.assignment[$0.key] == 3 })
        // A member leaves: only its partitions move, the others stay put.
        let three = g.partitions(of: 3)
        let left = g.leave(3)
        #expect(left)
        let after = g.rebalance(all)
        #expect(Set(after.map(\.key)) == Set(three))
        for (key, owner) in before where !three.contains(key) { #expect(g.assignment[key] == owner) }
    }

    @Test func onlySubscribersGetATopicsPartitions() {
        var g = GroupMembership()
        let all = partitions([("a", 1, 4), ("b", 2, 4)])
        g.join(member(1, ["a"]))
        g.join(member(2, ["a", "b"]))
        _ = g.rebalance(all)
        for p in all where p.topic == "b" { #expect(g.assignment[p.key] == 2) }
        #expect(g.assignment.count == 8)
    }

    @Test func silentMembersExpireAndTheGenerationMoves() {
        var g = GroupMembership()
        g.join(member(1))
        g.join(member(2))
        let generation = g.generation
        let touched = g.touch(1, now: 5_000)
        #expect(touched)
        #expect(g.expire(now: 10_500, timeout: 10_000) == [2])
        #expect(g.generation > generation)
        let gone = !g.touch(2, now: 10_600)
        #expect(gone)
    }

    /// Random joins and leaves: invariants after every rebalance.
    @Test(arguments: [11, 12, 13] as [UInt64]) func invariantsUnderRandomChanges(seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        var g = GroupMembership()
        let all = partitions([("a", 1, 7), ("b", 2, 5)])
        var nextID: UInt64 = 1
        for _ in 0..<300 {
            if g.members.isEmpty || rng.next() % 3 != 0 {
                let topics: Set<String> = [["a"], ["b"], ["a", "b"]][Int(rng.next() % 3)]
                g.join(member(nextID, topics))
                nextID += 1
            } else {
                g.leave(g.members.keys.sorted()[Int(rng.next() % UInt64(g.members.count))])
            }
            let generation = g.generation
            _ = g.rebalance(all)
            #expect(g.generation >= generation)
            for p in all {
                let eligible = g.members.values.filter { $0.topics.contains(p.topic) }
                if eligible.isEmpty {
                    #expect(g.assignment[p.key] == nil)
                } else {
                    let owner = g.assignment[p.key]
                    #expect(owner.map { id in eligible.contains { $0.id == id } } == true, "an eligible owner")
                }
            }
        }
    }
}
