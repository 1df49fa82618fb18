/// The deadline of every network phase of a device session.
///
/// Defaults suit a slow device on weak Wi-Fi. Tests inject short ones; `scaled(by:)` stretches
/// all of them at once for slow builds (sanitizers, emulators).
public struct Deadlines: Sendable, Equatable {
    /// From accept to the end of the TLS handshake.
    public var handshake: Duration = .seconds(10)
    /// From the handshake to the last byte of the attestation certificate.
    public var certificate: Duration = .seconds(10)
    /// For Dice-Auth's verdict, retries included.
    public var diceAuth: Duration = .seconds(60)
    /// The longest the device may go without accepting more of the image.
    public var stall: Duration = .seconds(30)
    /// The whole transfer of the image.
    public var transfer: Duration = .seconds(15 * 60)
    /// How long to wait for the device to close after the image and close_notify.
    public var close: Duration = .seconds(5)

    public init() {}

    /// Every deadline multiplied by `factor`.
    public func scaled(by factor: Double) -> Deadlines {
        var copy = self
        copy.handshake = handshake * factor
        copy.certificate = certificate * factor
        copy.diceAuth = diceAuth * factor
        copy.stall = stall * factor
        copy.transfer = transfer * factor
        copy.close = close * factor
        return copy
    }
}

extension Duration {
    /// Whole milliseconds, clamped to what the C core takes.
    var milliseconds: Int32 {
        let (seconds, attoseconds) = components
        let total = Double(seconds) * 1000 + Double(attoseconds) / 1e15
        return Int32(clamping: Int64(total.rounded(.up)))
    }

    /// Seconds as a Double, for arithmetic and display.
    var seconds: Double {
        let (whole, attoseconds) = components
        return Double(whole) + Double(attoseconds) / 1e18
    }
}
