#!/usr/bin/env node
// Runs the tiny fixture model (Y = Relu(X·W + B), X float[1,4]) with onnxruntime-node.
//   node examples/infer.mjs path/to/model.onnx            # from a plaintext file
//   mlic run model.mlb -- node examples/infer.mjs {model}/model.onnx
// Prints the output tensor as JSON on stdout.
import * as ort from 'onnxruntime-node';

const path = process.argv[2] ?? `${process.env.MLIC_MODEL_DIR}/model.onnx`;
const session = await ort.InferenceSession.create(path);
const x = new ort.Tensor('float32', Float32Array.from([1, 2, 3, 4]), [1, 4]);
const out = await session.run({ [session.inputNames[0]]: x });
console.log(JSON.stringify(Array.from(out[session.outputNames[0]].data)));
