import Testing

@testable import ChimeBroker

/// The size docs/architecture.md states for a delivery window's slot (one per offset in
/// flight or acked above the frontier), pinned.
@Suite struct WindowLayoutTests {
    @Test func aDeliveryWindowSlotIs40Bytes() {
        #expect(MemoryLayout<DeliveryWindow.Slot>.size == 40)
        #expect(MemoryLayout<DeliveryWindow.Slot>.stride == 40)
    }
}
