import Foundation
import StableDiffusion

/// The models a server's requests may name, and the one they get when they name none. Fixed for a server
/// that loaded its model; on a shared queue, the models live workers hold, refreshed from their heartbeats.
final class ModelCatalog: @unchecked Sendable {
    /// True on a shared queue: the list changes, and `POST /options` may switch the default.
    let isShared: Bool
    private let lock = NSLock()
    private var models: [ModelDescriptor]
    private var selected: String?

    init(fixed models: [ModelDescriptor]) {
        self.models = models
        isShared = false
    }

    /// An empty catalog filled by `update` (a front of a shared queue); `preferred` is the default while held.
    init(shared preferred: String? = nil) {
        models = []
        selected = preferred
        isShared = true
    }

    func update(_ live: [ModelDescriptor]) { lock.withLock { models = live } }

    var all: [ModelDescriptor] { lock.withLock { models } }

    /// "a, b" or "none", for messages.
    var names: String {
        let n = all.map(\.name)
        return n.isEmpty ? "none" : n.joined(separator: ", ")
    }

    /// The model a client's checkpoint title names (A1111 titles may add an extension or " [hash]").
    func named(_ title: String) -> ModelDescriptor? {
        all.first { StableDiffusionServer.names(title, $0.name) }
    }

    /// Makes `title` the default on a shared queue (A1111's `POST /options`); on a fixed one, only its own
    /// model is accepted.
    func select(_ title: String) -> Bool {
        guard let model = named(title) else { return false }
        if isShared { lock.withLock { selected = model.name } }
        return true
    }

    /// The default model: the selected one while a worker holds it, else the first held. With none held
    /// (a front started before its workers) a stand-in with SD 1.x defaults answers validation; the job
    /// itself is then refused with 422 naming what is available.
    var current: ModelDescriptor {
        lock.withLock {
            if let selected, let m = models.first(where: { $0.name == selected }) { return m }
            return models.first ?? Self.none
        }
    }

    static let none = ModelDescriptor(name: "none", kind: .standard, isSDXL: false, defaultSide: 512, defaultSteps: 50,
                                      defaultGuidanceScale: 7.5, schedulerClassName: nil, refinerName: nil, vaeName: nil,
                                      controlNetNames: [], controlModules: [])
}
