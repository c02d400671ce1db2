"""The latency stage's domain code (nothing is imported here, so that `moesd.timing`
stays as light as its own imports):

    timing   how one call is timed: device syncs, warm-up outside the timed region, repeats
    points   one measured point each (T_T(B, s), T_D(B, 1), T_reject(B), an end-to-end run) and
             the PointStore that keeps every point once, so a killed sweep resumes
    sweeps   the sweeps over models, K, B, temperatures and e2e settings of the config
"""
