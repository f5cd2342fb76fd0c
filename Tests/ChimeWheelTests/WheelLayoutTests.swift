import Testing

@testable import ChimeWheel

/// The sizes docs/architecture.md states, pinned: memory per slot is part of what the wheel
/// promises (10,000 partitions' wheels), and a field added without updating the docs fails here.
@Suite struct WheelLayoutTests {
    @Test func aWheelSlotIs48Bytes() {
        #expect(MemoryLayout<WheelSlot>.size == 48)
        #expect(MemoryLayout<WheelSlot>.stride == 48)
    }
}
