import Foundation
import DiffusionTensor

/// A single file opened and matched with its configs, before any weights are read.
public struct SingleFileModel: Sendable {
    public let checkpoint: SingleFileCheckpoint
    public let configs: DiffusersConfigFolder
    public let converter: OriginalCheckpointConverter
    public let index: ModelIndex
    /// Detection's verdict; nil when a config folder was given (then the configs say what the model is).
    public let detection: SingleFileDetection?
    public let schedulerConfig: SchedulerConfig
    public let lowResSchedulerConfig: SchedulerConfig?

    public init(url: URL, configDirectory: URL? = nil, predictionType: String? = nil, preferEMA: Bool = true) throws {
        if let p = predictionType, p != "epsilon", p != "v_prediction" {
            throw PipelineError.invalidArgument("prediction type must be epsilon or v_prediction, got \(p)")
        }
        checkpoint = try SingleFileCheckpoint(url: url)
        var shapes: [String: [Int]] = [:]
        for name in checkpoint.source.tensorNames { shapes[name] = checkpoint.source.shape(of: name) }
        let layout = try SingleFileDetector.layout(shapes: shapes, preferEMA: preferEMA, file: url.path)
        if let configDirectory {
            configs = try DiffusersConfigFolder(root: configDirectory)
            detection = nil
        } else {
            let found = try SingleFileDetector.detect(shapes: shapes, globalStep: checkpoint.globalStep, predictionType: predictionType,
                                                      preferEMA: preferEMA, file: url.path)
            configs = try DiffusersConfigFolder.bundled(found.configName)
            detection = found
        }
        converter = OriginalCheckpointConverter(source: checkpoint.source, layout: layout)
        index = try ModelIndex(contentsOf: configs.modelIndex)
        var scheduler = try SchedulerConfig(contentsOf: configs.schedulerConfig)
        if let p = predictionType ?? detection?.predictionType { scheduler.values["prediction_type"] = .string(p) }
        schedulerConfig = scheduler
        lowResSchedulerConfig = index.components["low_res_scheduler"] == nil ? nil : try SchedulerConfig(contentsOf: configs.lowResSchedulerConfig)
    }
}
