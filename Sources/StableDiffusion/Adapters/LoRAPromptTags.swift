import Foundation

/// AUTOMATIC1111's `<lora:NAME:SCALE>` prompt tags. Each tag is removed from the prompt text (as A1111
/// does; the spaces around it stay) and names `NAME.safetensors` in one folder; SCALE defaults to 1.
/// Other `<kind:...>` tags are left in the text.
public enum LoRAPromptTags {
    /// The prompt without its `<lora:…>` tags and the LoRAs they name, in order.
    /// - Parameter directory: where NAME is looked up; nil makes any tag an error. A NAME with a path
    ///   separator, or a file that resolves (through links) outside the folder, is refused.
    public static func extract(from prompt: String, directory: URL?) throws -> (prompt: String, loras: [LoRA]) {
        guard let re = try? NSRegularExpression(pattern: "<lora:([^>]*)>") else { return (prompt, []) }
        let ns = prompt as NSString
        let matches = re.matches(in: prompt, range: NSRange(location: 0, length: ns.length))
        guard !matches.isEmpty else { return (prompt, []) }
        guard let directory else {
            throw PipelineError.invalidArgument("the prompt has <lora:...> tags; give the folder their files are in (--lora-dir)")
        }
        var loras: [LoRA] = []
        var text = "", start = 0
        for m in matches {
            text += ns.substring(with: NSRange(location: start, length: m.range.location - start))
            start = m.range.location + m.range.length
            let tag = ns.substring(with: m.range)
            let args = ns.substring(with: m.range(at: 1)).split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            guard args.count <= 2 else {
                throw PipelineError.invalidArgument("\(tag): only <lora:NAME> and <lora:NAME:SCALE> are supported (one scale for both models)")
            }
            var scale: Float = 1
            if args.count == 2 {
                guard let s = Float(args[1].trimmingCharacters(in: .whitespaces)), s.isFinite else {
                    throw PipelineError.invalidArgument("\(tag): scale \"\(args[1])\" is not a number")
                }
                scale = s
            }
            loras.append(LoRA(file: try resolve(args[0], in: directory, tag: tag), scale: scale))
        }
        text += ns.substring(from: start)
        return (text, loras)
    }

    /// `NAME.safetensors` inside `directory`, never outside it.
    static func resolve(_ name: String, in directory: URL, tag: String) throws -> URL {
        guard !name.isEmpty, !name.contains("/"), !name.contains("\\"), !name.contains("\0") else {
            throw PipelineError.invalidArgument("\(tag): the LoRA name must be a file name in the LoRA folder, not a path")
        }
        let file = directory.appendingPathComponent(name + ".safetensors")
        guard FileManager.default.fileExists(atPath: file.path) else {
            throw PipelineError.badModel(path: file.path, detail: "no such LoRA file (named by \(tag))")
        }
        let folder = directory.resolvingSymlinksInPath().standardizedFileURL.path
        let resolved = file.resolvingSymlinksInPath().standardizedFileURL.path
        guard resolved.hasPrefix(folder.hasSuffix("/") ? folder : folder + "/") else {
            throw PipelineError.invalidArgument("\(tag): \(file.path) leads outside the LoRA folder \(directory.path)")
        }
        return file
    }
}
