/** A tensor as a byte range of a model file: what the format listers (tensors.ts, onnx.ts, gguf.ts) produce. */
export interface TensorRef {
  /** the file's path relative to the model's root ('' for a single-file model) */
  file: string;
  name: string;
  /** the format's element type, as safetensors names them (F32, F16, BF16, I8, Q4_K, ...) */
  dtype: string;
  shape: number[];
  /** byte offset of the first element in the file */
  offset: number;
  /** bytes */
  length: number;
  elements: number;
}
