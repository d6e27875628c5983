/// A value handed to work on other threads that the caller knows is safe to share there
/// (read only meanwhile, or touched on disjoint parts).
package struct UnsafeSendable<T>: @unchecked Sendable {
    package let value: T
    package init(_ value: T) { self.value = value }
}
