/// diffusers' `_use_default_values`: the keys of a saved config that were never set, only filled in with
/// the saving class's defaults. `ConfigMixin.extract_init_dict` drops them before building any class from
/// the config, so each class uses its own defaults; every diffusers config this engine reads does the same.
/// (diffusers ~0.22-0.23 wrote the list into the files it saved; it is also in every config diffusers holds
/// in memory, which is what `from_config(pipe.scheduler.config)` switches from.)
enum ConfigDefaults {
    static let key = "_use_default_values"

    /// `values` without the listed keys and without the list itself.
    static func droppingUsedDefaults(_ values: [String: JSONValue]) -> [String: JSONValue] {
        guard let listed = values[key] else { return values }
        let names = Set(listed.arrayValue?.compactMap(\.stringValue) ?? [])
        return values.filter { !names.contains($0.key) && $0.key != key }
    }
}
