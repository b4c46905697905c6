/// The one protocol every coto error adopts: what the error concerns (a file, a directory, an option, an
/// input record; nil when nothing more specific applies), the cause as one line, and the exit status a
/// command ends with. The CLIs catch this protocol and render `error: SUBJECT: cause`, so a new error
/// type is rendered like every other one (Docs/architecture.md, "Where each concept lives").
public protocol CotoError: Error, CustomStringConvertible {
    /// The file, directory or option the error is about.
    var subject: String? { get }
    /// The cause, one line.
    var message: String { get }
    /// The process exit status (1: bad input or failed operation).
    var exitCode: Int32 { get }
}

extension CotoError {
    public var exitCode: Int32 { 1 }
    public var description: String { subject.map { "\($0): \(message)" } ?? message }
}

extension LAPACKError: CotoError {
    public var subject: String? { nil }
    public var message: String { "\(routine) failed (info \(info))" }
}
