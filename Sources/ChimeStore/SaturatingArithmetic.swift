/// Sums of times and durations that come from outside (a client, or a file written by an
/// earlier version): past the ends of `Int64` they stop there instead of trapping. For a
/// deadline that means "never" (or "long ago"), which is what an extreme value asked for.
extension Int64 {
    @inlinable
    package func saturatingAdd(_ other: Int64) -> Int64 {
        let (sum, overflow) = addingReportingOverflow(other)
        guard overflow else { return sum }
        return other > 0 ? .max : .min
    }

    @inlinable
    package func saturatingSubtract(_ other: Int64) -> Int64 {
        let (difference, overflow) = subtractingReportingOverflow(other)
        guard overflow else { return difference }
        return other > 0 ? .min : .max
    }
}
