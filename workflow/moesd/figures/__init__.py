"""Figures and tables of the paper from a run's tidy tables, one module per paper figure (or
figure family); `style` holds the shared conventions. This file holds only names, so that the
Snakefile and the tests read them without importing matplotlib.

    fig1_routing     Fig. 1: measured distinct experts against Eq. 8; N(t)/E; tokens per expert
    fig2_speedup     Fig. 2: speedup and target efficiency against B (measured; roofline theory)
    fig3_efficiency  Fig. 3: target efficiency, MoE against dense
    fig4_sparsity    Fig. 4: the sparsity grid against the fitted Algorithm 1
    fig6_e2e         Fig. 6: end-to-end speedup, MoE against dense
    tables           Tables 1-2 analog (peak speedups) and the Table 3 analog's Markdown
"""

# `moesd figures` writes these from the speedup and fit tables (one PNG + PDF + caption each)
MEASURED_FIGURES = ("fig2_speedup", "fig3_target_efficiency", "fig4_sparsity_fit", "fig6_e2e")
# `moesd theory` writes these from the equations and the real architectures alone
THEORY_FIGURES = ("active_experts", "tokens_per_expert", "roofline_speedup")
# Fig. 1's measured panels come from the routing counts (runs with a trained or hub pair)
ROUTING_FIGURE = "fig1_routing"
# one notebook per measured figure (notebooks/<name>.ipynb), Fig. 1's where routing was measured
NOTEBOOKS = (ROUTING_FIGURE, *MEASURED_FIGURES)
