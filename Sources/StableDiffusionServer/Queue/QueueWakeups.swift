import Foundation

/// Who to wake when a notification arrives on the queue's LISTEN connection: the worker thread waiting
/// for work, requests waiting for their job's result, the worker whose job is to stop. Every wait is
/// bounded by the poll interval, so a lost notification delays and never loses.
final class QueueWakeups: @unchecked Sendable {
    private let lock = NSLock()
    private let work = DispatchSemaphore(value: 0)
    private var doneWaiters: [Int64: [UUID: CheckedContinuation<Void, Never>]] = [:]
    private var cancelHandler: (@Sendable (Int64) -> Void)?

    /// A payload of the `sd_queue` channel: `job` (new work), `done:ID`, `cancel:ID`.
    func deliver(_ payload: String) {
        if payload == "job" { work.signal(); return }
        let parts = payload.split(separator: ":")
        guard parts.count == 2, let id = Int64(parts[1]) else { return }
        switch parts[0] {
        case "done": resumeDone(id)
        case "cancel": lock.withLock { cancelHandler }?(id)
        default: break
        }
    }

    /// Blocks the worker thread until work may be there, at most `seconds`.
    func waitForWork(seconds: Double) { _ = work.wait(timeout: .now() + seconds) }

    func workMayBeThere() { work.signal() }

    /// Returns when job `id` may have ended, at most after `seconds`.
    func waitForDone(_ id: Int64, seconds: Double) async {
        let token = UUID()
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            lock.withLock { doneWaiters[id, default: [:]][token] = c }
            Task {
                try? await Task.sleep(nanoseconds: UInt64(seconds * 1e9))
                let waiting = self.lock.withLock { self.doneWaiters[id]?.removeValue(forKey: token) }
                waiting?.resume()
            }
        }
    }

    func onCancel(_ handler: @escaping @Sendable (Int64) -> Void) { lock.withLock { cancelHandler = handler } }

    /// After a reconnect (notifications may have been missed) or at shutdown: everyone looks again.
    func wakeAll() {
        let all = lock.withLock { () -> [CheckedContinuation<Void, Never>] in
            defer { doneWaiters = [:] }
            return doneWaiters.values.flatMap(\.values)
        }
        for c in all { c.resume() }
        work.signal()
    }

    private func resumeDone(_ id: Int64) {
        let waiting = lock.withLock { doneWaiters.removeValue(forKey: id) }
        for c in (waiting ?? [:]).values { c.resume() }
    }
}
