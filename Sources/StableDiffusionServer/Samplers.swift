import StableDiffusion

/// AUTOMATIC1111's sampler names (and the newer separate `scheduler` field) mapped to the engine's
/// schedulers (`Schedulers.cliNames`). A1111's k-diffusion samplers and diffusers' schedulers are the same
/// algorithms; "PLMS" is diffusers' PNDM (with `skip_prk_steps`, as SD configs have it).
enum Samplers {
    struct Entry: Sendable {
        let name: String
        let aliases: [String]
        let engine: String
        let options: [(String, String)]
    }

    static let all: [Entry] = [
        Entry(name: "Euler a", aliases: ["k_euler_a", "k_euler_ancestral"], engine: "euler-a", options: []),
        Entry(name: "Euler", aliases: ["k_euler"], engine: "euler", options: []),
        Entry(name: "LMS", aliases: ["k_lms"], engine: "lms", options: []),
        Entry(name: "Heun", aliases: ["k_heun"], engine: "heun", options: []),
        Entry(name: "DPM++ 2M", aliases: ["k_dpmpp_2m"], engine: "dpm++2m", options: []),
        Entry(name: "DPM++ 2M Karras", aliases: ["k_dpmpp_2m_ka"], engine: "dpm++2m-karras", options: [("scheduler", "karras")]),
        Entry(name: "DDIM", aliases: [], engine: "ddim", options: []),
        Entry(name: "PLMS", aliases: ["PNDM"], engine: "pndm", options: []),
        Entry(name: "UniPC", aliases: [], engine: "unipc", options: []),
        Entry(name: "DDPM", aliases: [], engine: "ddpm", options: []),
        // A1111 1.7+'s LCM sampler: for LCM-distilled models and LCM-LoRA (few steps, low CFG).
        Entry(name: "LCM", aliases: ["k_lcm"], engine: "lcm", options: []),
        // Forge's TCD sampler (for TCD LoRAs); eta is its gamma, 0.3 unless the request sends one.
        Entry(name: "TCD", aliases: [], engine: "tcd", options: []),
    ]

    /// A1111's default when neither sampler_name nor sampler_index is sent.
    static let defaultName = "Euler"
    static let schedulerNames = ["automatic", "karras"]

    /// The engine scheduler for a sampler name (A1111 name, alias or engine name) and an optional
    /// A1111 scheduler ("automatic" keeps the sampler's own spacing, "karras" asks for Karras sigmas).
    static func resolve(sampler: String?, scheduler: String?, reader: inout FieldReader, samplerField: String = "sampler_name") -> String? {
        let name = sampler ?? defaultName
        guard let entry = all.first(where: { $0.name == name || $0.aliases.contains(name) || $0.engine == name }) else {
            reader.fail(samplerField, "unknown sampler \"\(name)\"; known: \(all.map(\.name).joined(separator: ", "))")
            return nil
        }
        switch scheduler?.lowercased() {
        case nil, "", "automatic":
            return entry.engine
        case "karras":
            if entry.engine == "dpm++2m" || entry.engine == "dpm++2m-karras" { return "dpm++2m-karras" }
            reader.fail("scheduler", "the Karras schedule is available with DPM++ 2M only (sampler \"\(entry.name)\")")
            return nil
        default:
            reader.fail("scheduler", "unknown scheduler \"\(scheduler ?? "")\"; known: \(schedulerNames.joined(separator: ", "))")
            return nil
        }
    }

    /// The A1111 name of an engine scheduler (for `info.sampler_name`).
    static func a1111Name(engine: String) -> String {
        all.first { $0.engine == engine }?.name ?? engine
    }
}
