import FuzzTargets
import Foundation

// SwiftPM gives an executable its own entry point, so libFuzzer's main() is not used: its driver is run
// from here instead. The target comes from SD_FUZZ_TARGET, checked before the first input.

@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

nonisolated(unsafe) var selected = FuzzTarget.safetensors

let name = ProcessInfo.processInfo.environment["SD_FUZZ_TARGET"] ?? ""
guard let target = FuzzTarget(rawValue: name) else {
    let names = FuzzTarget.allCases.map(\.rawValue).joined(separator: ", ")
    FileHandle.standardError.write(Data("sd-fuzz: set SD_FUZZ_TARGET to one of: \(names) (got \"\(name)\")\n".utf8))
    exit(2)
}
selected = target

var argc = CommandLine.argc
var argv = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in
    selected.run(size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
})
