"""collab-vlm-tiny: a LLaVA-style VLM (DINOv2 ViT-S/14 + projector + SmolLM2-135M) run by
llama.cpp's multimodal library (mtmd) and split between device and server.

- mmproj:    the mmproj GGUF writer (internvl projector type) and the projector math
- mtmd:      llama.cpp's mtmd through llama-cpp-python (encoder parity, training features,
             the unsplit reference VLM)
- reference: numpy / onnxruntime DINOv2 features
- vqa:       the Fashion-MNIST VQA set (templated questions, exact-match answers)
- train:     projector training with SmolLM2 frozen (torch, training only)
- split:     the device runtime (native collab_vlm_vision_* + head session) over the llm transport
- cli:       `collab vlm demo` / `collab vlm ask`
"""
