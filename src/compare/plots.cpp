#include "compare/plots.h"

#include <cctype>
#include <cstddef>
#include <filesystem>
#include <sstream>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/gnuplot.h"

namespace fs = std::filesystem;

namespace ecmoe::compare {

namespace {

// A file-name-safe form of a variant label ("EC c=0.5" -> "EC_c_0.5").
std::string slug(const std::string& label) {
  std::string out;
  for (char c : label) out += (std::isalnum((unsigned char)c) || c == '.' || c == '-') ? c : '_';
  return out;
}

std::string curve_data(const VariantSummary& s) {
  std::ostringstream o;
  o << "# " << s.variant << ": step, training seconds, validation loss, perplexity (mean of "
    << s.seeds << " seed(s))\n";
  for (const EvalPoint& p : s.curve)
    o << p.step << ' ' << p.train_seconds << ' ' << p.loss << ' ' << p.perplexity << '\n';
  return o.str();
}

// x_from > 0 zooms in on the points from that x on (the late part, where the curves separate).
std::string curve_plot(const std::vector<const VariantSummary*>& variants, int x_column,
                       const std::string& output, const std::string& title,
                       const std::string& xlabel, double x_from = 0) {
  std::ostringstream o;
  o << "set output " << gnuplot_quote(output) << "\n"
    << "set title " << gnuplot_quote(title) << "\nset xlabel " << gnuplot_quote(xlabel) << "\n"
    << "set ylabel 'validation perplexity (log scale)'\nset logscale y\n"
    << "set autoscale yfix\nset offsets 0, 0, graph 0.03, graph 0.03\n"
    << (x_from > 0 ? "set xrange [" + std::to_string(x_from) + ":*]\n" : "set xrange [*:*]\n")
    << "plot ";
  for (std::size_t i = 0; i < variants.size(); ++i)
    o << (i ? ", \\\n     " : "") << gnuplot_quote(slug(variants[i]->variant) + ".dat") << " using "
      << x_column << ":4 with linespoints lw 2 lt " << i % 8 + 1 << " dt " << i / 8 + 1 << " title "
      << gnuplot_quote(variants[i]->variant);
  o << "\nunset logscale y\n";
  return o.str();
}

// Per validation point: step, then the shares (%) of tokens on 0, 1, 2, 3-4 and >4 experts.
std::string experts_over_training_data(const VariantSummary& s) {
  std::ostringstream o;
  o << "# " << s.variant << ": step, % of validation tokens on 0, 1, 2, 3-4, >4 experts\n";
  for (const EvalPoint& p : s.curve) {
    const auto& h = p.experts_per_token;
    o << p.step << ' ' << 100 * share_of_tokens(h, 0) << ' ' << 100 * share_of_tokens(h, 1) << ' '
      << 100 * share_of_tokens(h, 2) << ' ' << 100 * (share_of_tokens(h, 3) + share_of_tokens(h, 4))
      << ' ' << 100 * share_of_tokens(h, 5) << '\n';
  }
  return o.str();
}

}  // namespace

bool is_expert_choice(const VariantSummary& s) { return s.router.rfind("expert_choice", 0) == 0; }

PlotFiles write_plots(const std::string& dir, const std::vector<VariantSummary>& summaries) {
  find_gnuplot("the report's figures");
  fs::create_directories(dir);
  std::vector<const VariantSummary*> encoder, decoder, ec;
  for (const VariantSummary& s : summaries) {
    write_file_atomically((fs::path(dir) / (slug(s.variant) + ".dat")).string(), curve_data(s));
    (s.family == "decoder" ? decoder : encoder).push_back(&s);
    if (is_expert_choice(s) && s.family == "encoder") ec.push_back(&s);
  }
  PlotFiles files;
  std::ostringstream gp;
  gp << "# Figures of the comparison report; run `gnuplot plots.gp` in this folder.\n"
     << "set terminal pngcairo size 960,600 noenhanced font 'sans,11'\n"
     << "set key outside right\nset grid\n";
  if (!encoder.empty()) {
    gp << curve_plot(encoder, 1, "perplexity_vs_step.png", "Encoder (masked LM): validation",
                     "training step");
    gp << curve_plot(encoder, 2, "perplexity_vs_time.png",
                     "Encoder (masked LM): validation against training time",
                     "training seconds (evaluation excluded)");
    const double last_step = double(encoder.front()->curve.back().step);
    gp << curve_plot(encoder, 1, "perplexity_vs_step_late.png",
                     "Encoder (masked LM): validation, second half of training", "training step",
                     last_step / 2);
    gp << "set xrange [*:*]\n";
    files.png.push_back("perplexity_vs_step.png");
    files.png.push_back("perplexity_vs_step_late.png");
    files.png.push_back("perplexity_vs_time.png");
  }
  if (!decoder.empty()) {
    gp << curve_plot(decoder, 1, "decoder_perplexity_vs_step.png",
                     "Decoder (next-token LM): validation", "training step");
    files.png.push_back("decoder_perplexity_vs_step.png");
  }
  if (!ec.empty()) {
    std::ostringstream hist;
    hist << "# experts per token (share of tokens, final validation): bin";
    for (const VariantSummary* s : ec) hist << ", " << s->variant;
    hist << '\n';
    const char* bins[] = {"0", "1", "2", "3", "4", ">4"};
    for (int b = 0; b < 6; ++b) {
      hist << '"' << bins[b] << '"';
      for (const VariantSummary* s : ec) hist << ' ' << 100.0 * s->share_of_tokens(b);
      hist << '\n';
    }
    write_file_atomically((fs::path(dir) / "experts_per_token.dat").string(), hist.str());
    gp << "set output 'experts_per_token.png'\n"
       << "set title 'Experts per token under expert choice (final validation)'\n"
       << "set xlabel 'experts that took the token'\nset ylabel '% of tokens'\n"
       << "set style data histograms\nset style histogram clustered gap 1\n"
       << "set style fill solid 0.8 border -1\nset yrange [0:*]\nset offsets 0, 0, 0, 0\n"
       << "plot ";
    for (std::size_t i = 0; i < ec.size(); ++i)
      gp << (i ? ", \\\n     " : "") << "'experts_per_token.dat' using " << i + 2
         << (i == 0 ? ":xtic(1)" : "") << " title " << gnuplot_quote(ec[i]->variant);
    gp << "\n";
    files.png.push_back("experts_per_token.png");
    // The same shares at every validation: solid the paper's 3-4 experts, dashed no expert.
    gp << "set output 'experts_per_token_over_training.png'\n"
       << "set title 'Experts per token under expert choice, over training (validation)'\n"
       << "set xlabel 'training step'\nset ylabel '% of tokens'\nset style data linespoints\n"
       << "set yrange [0:*]\nplot ";
    for (std::size_t i = 0; i < ec.size(); ++i) {
      const std::string data = slug(ec[i]->variant) + "_experts.dat";
      write_file_atomically((fs::path(dir) / data).string(), experts_over_training_data(*ec[i]));
      gp << (i ? ", \\\n     " : "") << gnuplot_quote(data) << " using 1:5 lw 2 lt " << i % 8 + 1
         << " dt 1 title " << gnuplot_quote(ec[i]->variant + ": 3-4 experts") << ", \\\n     "
         << gnuplot_quote(data) << " using 1:2 lw 2 lt " << i % 8 + 1 << " dt 2 title "
         << gnuplot_quote(ec[i]->variant + ": no expert");
    }
    gp << "\n";
    files.png.push_back("experts_per_token_over_training.png");
  }
  write_file_atomically((fs::path(dir) / "plots.gp").string(), gp.str());
  run_gnuplot(dir, "plots.gp", "the report's figures");
  for (const std::string& png : files.png)
    ECMOE_CHECK(fs::exists(fs::path(dir) / png) && fs::file_size(fs::path(dir) / png) > 0,
                "gnuplot did not write ", dir, "/", png);
  return files;
}

}  // namespace ecmoe::compare
