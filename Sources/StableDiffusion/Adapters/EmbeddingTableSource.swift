import DiffusionTensor

/// Serves text-encoder weights with rows appended to the token-embedding table (textual inversion),
/// like transformers' `resize_token_embeddings` followed by writing the new rows.
struct EmbeddingTableSource: TensorSource {
    let base: any TensorSource
    let tableName: String
    /// The table's rows kept (the tokenizer's size: transformers resizes to `len(tokenizer) + n`).
    let keptRows: Int
    let rows: Tensor   // [n, dim]

    init(base: any TensorSource, keptRows: Int, rows: Tensor) throws {
        self.base = base
        let plain = "embeddings.token_embedding.weight"
        tableName = base.shape(of: plain) != nil ? plain : "text_model." + plain
        guard let shape = base.shape(of: tableName), shape.count == 2 else {
            throw PipelineError.badModel(path: base.sourceDescription, detail: "no token embedding table \(tableName)")
        }
        guard shape[0] >= keptRows, rows.shape[1] == shape[1] else {
            throw PipelineError.invalidArgument("embedding vectors have \(rows.shape[1]) dimensions; this text encoder's token embeddings have \(shape[1]) (the embedding was made for another model)")
        }
        self.keptRows = keptRows
        self.rows = rows
    }

    var tensorNames: [String] { base.tensorNames }
    var sourceDescription: String { base.sourceDescription }

    func shape(of name: String) -> [Int]? {
        guard name == tableName, let s = base.shape(of: name) else { return base.shape(of: name) }
        return [keptRows + rows.shape[0], s[1]]
    }

    func tensor(_ name: String) throws -> Tensor {
        let t = try base.tensor(name)
        guard name == tableName else { return t }
        return try Tensor.concatenate([t.slice(axis: 0, 0..<keptRows), rows], axis: 0)
    }
}
