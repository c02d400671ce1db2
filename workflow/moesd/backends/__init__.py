"""Measuring backends beside our engine (moesd.decode): vLLM, the engine the paper used, for
end-to-end decoding and acceptance (moesd.backends.vllm)."""

BACKENDS = ("ours", "vllm")  # the engines a measurement names in its `backend` column
