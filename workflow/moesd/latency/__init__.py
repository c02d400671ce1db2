"""The latency stage's domain code (the clock itself is moesd.timing, shared with every stage
that times):

    measure    one measurement each: T_T(B, s), T_D(B, 1), T_reject(B), an end-to-end run
    store      the PointStore that keeps every point once, so a killed sweep resumes and a
               failed point is measured again
    tables     points laid out as tidy tables, failed points reported, tables written
    retries    a slice's failed tries, which the workflow reads to run it again
    sweeps     the sweeps over models, K, B and temperatures of the config
    e2e        our engine's end-to-end AR and SD points
    e2e_vllm   vLLM's end-to-end points on the same prompts
"""
