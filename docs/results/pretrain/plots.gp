# Figures of the comparison report; run `gnuplot plots.gp` in this folder.
set terminal pngcairo size 960,600 noenhanced font 'sans,11'
set key outside right
set grid
set output 'perplexity_vs_step.png'
set title 'Encoder (masked LM): validation'
set xlabel 'training step'
set ylabel 'validation perplexity (log scale)'
set logscale y
set autoscale yfix
set offsets 0, 0, graph 0.03, graph 0.03
set xrange [*:*]
plot 'dense.dat' using 1:4 with linespoints lw 2 lt 1 dt 1 title 'dense', \
     'top-1.dat' using 1:4 with linespoints lw 2 lt 2 dt 1 title 'top-1', \
     'top-2.dat' using 1:4 with linespoints lw 2 lt 3 dt 1 title 'top-2', \
     'EC_c_2.dat' using 1:4 with linespoints lw 2 lt 4 dt 1 title 'EC c=2', \
     'EC_c_1.dat' using 1:4 with linespoints lw 2 lt 5 dt 1 title 'EC c=1', \
     'EC_c_0.5.dat' using 1:4 with linespoints lw 2 lt 6 dt 1 title 'EC c=0.5', \
     'EC-CAP_b_2.dat' using 1:4 with linespoints lw 2 lt 7 dt 1 title 'EC-CAP b=2', \
     'EC-CAP_b_3.dat' using 1:4 with linespoints lw 2 lt 8 dt 1 title 'EC-CAP b=3', \
     'hash.dat' using 1:4 with linespoints lw 2 lt 1 dt 2 title 'hash'
unset logscale y
set output 'perplexity_vs_time.png'
set title 'Encoder (masked LM): validation against training time'
set xlabel 'training seconds (evaluation excluded)'
set ylabel 'validation perplexity (log scale)'
set logscale y
set autoscale yfix
set offsets 0, 0, graph 0.03, graph 0.03
set xrange [*:*]
plot 'dense.dat' using 2:4 with linespoints lw 2 lt 1 dt 1 title 'dense', \
     'top-1.dat' using 2:4 with linespoints lw 2 lt 2 dt 1 title 'top-1', \
     'top-2.dat' using 2:4 with linespoints lw 2 lt 3 dt 1 title 'top-2', \
     'EC_c_2.dat' using 2:4 with linespoints lw 2 lt 4 dt 1 title 'EC c=2', \
     'EC_c_1.dat' using 2:4 with linespoints lw 2 lt 5 dt 1 title 'EC c=1', \
     'EC_c_0.5.dat' using 2:4 with linespoints lw 2 lt 6 dt 1 title 'EC c=0.5', \
     'EC-CAP_b_2.dat' using 2:4 with linespoints lw 2 lt 7 dt 1 title 'EC-CAP b=2', \
     'EC-CAP_b_3.dat' using 2:4 with linespoints lw 2 lt 8 dt 1 title 'EC-CAP b=3', \
     'hash.dat' using 2:4 with linespoints lw 2 lt 1 dt 2 title 'hash'
unset logscale y
set output 'perplexity_vs_step_late.png'
set title 'Encoder (masked LM): validation, second half of training'
set xlabel 'training step'
set ylabel 'validation perplexity (log scale)'
set logscale y
set autoscale yfix
set offsets 0, 0, graph 0.03, graph 0.03
set xrange [100.000000:*]
plot 'dense.dat' using 1:4 with linespoints lw 2 lt 1 dt 1 title 'dense', \
     'top-1.dat' using 1:4 with linespoints lw 2 lt 2 dt 1 title 'top-1', \
     'top-2.dat' using 1:4 with linespoints lw 2 lt 3 dt 1 title 'top-2', \
     'EC_c_2.dat' using 1:4 with linespoints lw 2 lt 4 dt 1 title 'EC c=2', \
     'EC_c_1.dat' using 1:4 with linespoints lw 2 lt 5 dt 1 title 'EC c=1', \
     'EC_c_0.5.dat' using 1:4 with linespoints lw 2 lt 6 dt 1 title 'EC c=0.5', \
     'EC-CAP_b_2.dat' using 1:4 with linespoints lw 2 lt 7 dt 1 title 'EC-CAP b=2', \
     'EC-CAP_b_3.dat' using 1:4 with linespoints lw 2 lt 8 dt 1 title 'EC-CAP b=3', \
     'hash.dat' using 1:4 with linespoints lw 2 lt 1 dt 2 title 'hash'
unset logscale y
set xrange [*:*]
set output 'decoder_perplexity_vs_step.png'
set title 'Decoder (next-token LM): validation'
set xlabel 'training step'
set ylabel 'validation perplexity (log scale)'
set logscale y
set autoscale yfix
set offsets 0, 0, graph 0.03, graph 0.03
set xrange [*:*]
plot 'decoder_top-2.dat' using 1:4 with linespoints lw 2 lt 1 dt 1 title 'decoder top-2', \
     'decoder_EC_c_2.dat' using 1:4 with linespoints lw 2 lt 2 dt 1 title 'decoder EC c=2', \
     'decoder_EC-threshold-trained_c_2.dat' using 1:4 with linespoints lw 2 lt 3 dt 1 title 'decoder EC-threshold-trained c=2'
unset logscale y
set output 'experts_per_token.png'
set title 'Experts per token under expert choice (final validation)'
set xlabel 'experts that took the token'
set ylabel '% of tokens'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set yrange [0:*]
set offsets 0, 0, 0, 0
plot 'experts_per_token.dat' using 2:xtic(1) title 'EC c=2', \
     'experts_per_token.dat' using 3 title 'EC c=1', \
     'experts_per_token.dat' using 4 title 'EC c=0.5', \
     'experts_per_token.dat' using 5 title 'EC-CAP b=2', \
     'experts_per_token.dat' using 6 title 'EC-CAP b=3'
set output 'experts_per_token_over_training.png'
set title 'Experts per token under expert choice, over training (validation)'
set xlabel 'training step'
set ylabel '% of tokens'
set style data linespoints
set yrange [0:*]
plot 'EC_c_2_experts.dat' using 1:5 lw 2 lt 1 dt 1 title 'EC c=2: 3-4 experts', \
     'EC_c_2_experts.dat' using 1:2 lw 2 lt 1 dt 2 title 'EC c=2: no expert', \
     'EC_c_1_experts.dat' using 1:5 lw 2 lt 2 dt 1 title 'EC c=1: 3-4 experts', \
     'EC_c_1_experts.dat' using 1:2 lw 2 lt 2 dt 2 title 'EC c=1: no expert', \
     'EC_c_0.5_experts.dat' using 1:5 lw 2 lt 3 dt 1 title 'EC c=0.5: 3-4 experts', \
     'EC_c_0.5_experts.dat' using 1:2 lw 2 lt 3 dt 2 title 'EC c=0.5: no expert', \
     'EC-CAP_b_2_experts.dat' using 1:5 lw 2 lt 4 dt 1 title 'EC-CAP b=2: 3-4 experts', \
     'EC-CAP_b_2_experts.dat' using 1:2 lw 2 lt 4 dt 2 title 'EC-CAP b=2: no expert', \
     'EC-CAP_b_3_experts.dat' using 1:5 lw 2 lt 5 dt 1 title 'EC-CAP b=3: 3-4 experts', \
     'EC-CAP_b_3_experts.dat' using 1:2 lw 2 lt 5 dt 2 title 'EC-CAP b=3: no expert'
