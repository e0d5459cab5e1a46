// The type checker's view of dist/ort/ort.webgpu.min.mjs, which `waystation build` copies from npm's onnxruntime-web.
export * from "onnxruntime-web/webgpu";
