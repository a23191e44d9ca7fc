/// The CLI form `NAME[:SCALE]` of `--lora` and `--controlnet`: a trailing `:number` is the scale; anything
/// else (a path or repo id with colons) is part of the name.
public enum ScaledArgument {
    /// The name and the scale, or nil when none is given. A scale that is not finite is an error naming `what`.
    public static func split(_ argument: String, what: String) throws -> (name: String, scale: Float?) {
        guard let colon = argument.lastIndex(of: ":"), let s = Float(argument[argument.index(after: colon)...]) else {
            return (argument, nil)
        }
        guard s.isFinite else { throw PipelineError.invalidArgument("\(what) scale in \"\(argument)\" must be a finite number") }
        return (String(argument[..<colon]), s)
    }
}
