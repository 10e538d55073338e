// Task loaders on files the tests write: GLUE TSV layouts (single sentences, pairs, headerless
// CoLA, MNLI's differing column counts), their errors, the built-in tasks' raw formats, splits.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "../data/test_util.h"
#include "core/error.h"
#include "finetune/builtin_tasks.h"
#include "finetune/class_metrics.h"
#include "finetune/glue_tsv.h"
#include "finetune/task_formats.h"
#include "finetune/tsv_task.h"
#include "support/core/error_of.h"

namespace ecmoe::finetune {
namespace {

using data::test::TempDir;
using data::test::write_text;
using ecmoe::testing::error_of;

std::string sst2_rows(int n, int offset) {
  std::string text = "sentence\tlabel\n";
  for (int i = 0; i < n; ++i)
    text += "sentence number " + std::to_string(i + offset) + " \t" + std::to_string(i % 2) + "\n";
  return text;
}

TEST(GlueTsv, Sst2SplitsTrainIntoTrainAndDevAndUsesDevAsTest) {
  TempDir dir("ft-sst2");
  write_text(dir / "train.tsv", sst2_rows(50, 0));
  write_text(dir / "dev.tsv", sst2_rows(8, 1000));
  const TaskData t = load_glue_task("sst2", dir.str());
  EXPECT_EQ(t.name, "glue:sst2");
  EXPECT_FALSE(t.pairs);
  EXPECT_EQ(t.dev.size(), 5u);  // 10% of 50
  EXPECT_EQ(t.train.size(), 45u);
  ASSERT_EQ(t.test.size(), 8u);
  EXPECT_EQ(t.test[3].text_a, "sentence number 1003 ");
  EXPECT_EQ(t.test[3].label, 1);
  // Deterministic: the same split every time.
  const TaskData again = load_glue_task("sst2", dir.str());
  ASSERT_EQ(again.dev.size(), t.dev.size());
  for (size_t i = 0; i < t.dev.size(); ++i) EXPECT_EQ(again.dev[i].text_a, t.dev[i].text_a);
  // Together, train and dev hold every row of train.tsv exactly once.
  std::set<std::string> seen;
  for (const auto* s : {&t.train, &t.dev})
    for (const Example& e : *s) EXPECT_TRUE(seen.insert(e.text_a).second);
  EXPECT_EQ(seen.size(), 50u);
}

TEST(GlueTsv, ColaIsHeaderlessWithFourColumns) {
  TempDir dir("ft-cola");
  write_text(dir / "f.tsv",
             "gj04\t1\t\tThe sailors rode the breeze clear of the rocks.\n"
             "gj04\t0\t*\tThe more we study verbs, the crazier they get get.\n");
  const auto rows = read_glue_tsv(dir / "f.tsv", glue_layout("cola"));
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].text_a, "The sailors rode the breeze clear of the rocks.");
  EXPECT_EQ(rows[0].label, 1);
  EXPECT_EQ(rows[1].label, 0);
}

TEST(GlueTsv, PairLayoutsFindTheirColumnsByHeader) {
  TempDir dir("ft-pairs");
  write_text(dir / "mrpc.tsv",
             "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t7\t8\tHe said so.\tHe did say so.\n");
  const auto mrpc = read_glue_tsv(dir / "mrpc.tsv", glue_layout("mrpc"));
  ASSERT_EQ(mrpc.size(), 1u);
  EXPECT_EQ(mrpc[0].text_a, "He said so.");
  EXPECT_EQ(mrpc[0].text_b, "He did say so.");
  EXPECT_EQ(mrpc[0].label, 1);
  write_text(dir / "rte.tsv",
             "index\tsentence1\tsentence2\tlabel\n0\tA b.\tC d.\tnot_entailment\n");
  EXPECT_EQ(read_glue_tsv(dir / "rte.tsv", glue_layout("rte"))[0].label, 1);
  write_text(dir / "qqp.tsv",
             "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n1\t2\t3\tWhy?\tHow?\t0\n");
  EXPECT_EQ(read_glue_tsv(dir / "qqp.tsv", glue_layout("qqp"))[0].text_b, "How?");

  // MNLI: train.tsv has 12 columns, dev_matched.tsv 16; each row must match its own header.
  std::string train_header =
      "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\t"
      "sentence2_binary_parse\tsentence1_parse\tsentence2_parse\t"
      "sentence1\tsentence2\tlabel1\tgold_label\n";
  std::string train = train_header;
  for (int i = 0; i < 30; ++i)
    train += std::to_string(i) + "\tp\tq\tg\tb1\tb2\tp1\tp2\tPremise " + std::to_string(i) +
             ".\tHypothesis.\tneutral\t" + (i % 3 == 0 ? "entailment" : "neutral") + "\n";
  write_text(dir / "mnli/train.tsv", train);
  std::string dev =
      "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
      "sentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tlabel2\tlabel3\tlabel4\t"
      "label5\tgold_label\n";
  dev += "0\tp\tq\tg\tb1\tb2\tp1\tp2\tA man.\tA person.\te\te\te\te\te\tentailment\n";
  dev += "1\tp\tq\tg\tb1\tb2\tp1\tp2\tA cat.\tA dog.\tc\tc\tc\tc\tc\tcontradiction\n";
  write_text(dir / "mnli/dev_matched.tsv", dev);
  const TaskData mnli = load_glue_task("mnli", dir / "mnli");
  EXPECT_TRUE(mnli.pairs);
  EXPECT_EQ(mnli.labels.size(), 3u);
  ASSERT_EQ(mnli.test.size(), 2u);
  EXPECT_EQ(mnli.test[1].label, 0);  // contradiction
  EXPECT_EQ(mnli.test[0].text_b, "A person.");
}

TEST(GlueTsv, BadInputIsAnErrorNamingFileAndLine) {
  TempDir dir("ft-bad");
  write_text(dir / "cols.tsv", "sentence\tlabel\ngood one\t1\nbad one\t1\textra\n");
  const std::string cols = error_of([&] { read_glue_tsv(dir / "cols.tsv", glue_layout("sst2")); });
  EXPECT_NE(cols.find(dir / "cols.tsv:3: 3 columns, expected 2"), std::string::npos) << cols;

  write_text(dir / "label.tsv", "sentence\tlabel\ngood one\t1\nodd one\tmaybe\n");
  const std::string label =
      error_of([&] { read_glue_tsv(dir / "label.tsv", glue_layout("sst2")); });
  EXPECT_NE(label.find(dir / "label.tsv:3: unknown label 'maybe'"), std::string::npos) << label;

  write_text(dir / "empty.tsv", "sentence\tlabel\n");
  const std::string empty =
      error_of([&] { read_glue_tsv(dir / "empty.tsv", glue_layout("sst2")); });
  EXPECT_NE(empty.find(dir / "empty.tsv: no labelled rows"), std::string::npos) << empty;

  write_text(dir / "cola.tsv", "gj04\t1\tThe sailors.\n");
  const std::string cola = error_of([&] { read_glue_tsv(dir / "cola.tsv", glue_layout("cola")); });
  EXPECT_NE(cola.find("cola.tsv:1: 3 columns, expected 4"), std::string::npos) << cola;

  write_text(dir / "header.tsv", "text\tlabel\nx\t1\n");
  EXPECT_NE(error_of([&] { read_glue_tsv(dir / "header.tsv", glue_layout("sst2")); })
                .find("header.tsv:1: no column 'sentence' (columns found: 'text', 'label'); the "
                      "GLUE sst2 layout needs 'sentence' and 'label'"),
            std::string::npos);
  EXPECT_NE(error_of([&] { glue_layout("wnli"); }).find("unknown GLUE task 'wnli'"),
            std::string::npos);
  EXPECT_NE(error_of([&] { load_task("glue:sst2", {}); }).find("expected glue:NAME:DIR"),
            std::string::npos);
  EXPECT_NE(error_of([&] { load_task("sentiment", {}); }).find("unknown task 'sentiment'"),
            std::string::npos);
}

// Your own TSV files: any label strings (sorted), a dev split carved from train when there is no
// dev file (the same rows every time), no test split without a test file, errors naming file,
// line and label.
TEST(TsvTask, LabelsAreTheTrainingFilesSortedAndUnseenLabelsAreErrors) {
  TempDir dir("ft-tsv");
  std::string train = "id\tlabel\ttext\n";
  const char* labels[] = {"zeta", "Alpha", "beta", "b"};
  for (int i = 0; i < 40; ++i)
    train += std::to_string(i) + "\t" + labels[i % 4] + "\ttext " + std::to_string(i) + "\n";
  write_text(dir / "t/train.tsv", train);
  const TaskData t = load_tsv_task("mine", tsv_task_files(dir / "t"), {}, 0.25);
  EXPECT_EQ(t.labels, (std::vector<std::string>{"Alpha", "b", "beta", "zeta"}));
  EXPECT_EQ(t.dev.size(), 10u);
  EXPECT_EQ(t.train.size(), 30u);
  EXPECT_TRUE(t.test.empty());
  EXPECT_EQ(t.sources.dev, "10 rows held out of train.tsv (dev_fraction 0.25)");
  const TaskData again = load_tsv_task("mine", tsv_task_files(dir / "t"), {}, 0.25);
  for (size_t i = 0; i < t.dev.size(); ++i) EXPECT_EQ(t.dev[i].text_a, again.dev[i].text_a);

  write_text(dir / "t/test.tsv", "text\tlabel\nfine\tb\nodd\tgamma\n");
  const std::string unseen =
      error_of([&] { load_tsv_task("mine", tsv_task_files(dir / "t"), {}, 0.25); });
  EXPECT_NE(unseen.find(dir / "t/test.tsv:3: label 'gamma' does not occur in " +
                        (dir / "t/train.tsv") + " (its labels: Alpha, b, beta, zeta)"),
            std::string::npos)
      << unseen;
  write_text(dir / "t/test.tsv", "text\tlabel\nfine\tb\nshort row\n");
  const std::string cols =
      error_of([&] { load_tsv_task("mine", tsv_task_files(dir / "t"), {}, 0.25); });
  EXPECT_NE(cols.find("test.tsv:3: 1 columns, expected 2 as in the header ('text', 'label')"),
            std::string::npos)
      << cols;
  // Columns by name, pairs.
  write_text(dir / "p/train.tsv", "a\tb\ty\nx1\tx2\tyes\nx3\tx4\tno\nx5\tx6\tno\n");
  const TaskData p =
      load_tsv_task("pairs", {dir / "p/train.tsv", dir / "p/train.tsv", ""}, {"a", "b", "y"}, 0.1);
  EXPECT_TRUE(p.pairs);
  ASSERT_EQ(p.train.size(), 3u);
  const auto first = std::find_if(p.train.begin(), p.train.end(),
                                  [](const Example& e) { return e.text_a == "x1"; });
  ASSERT_NE(first, p.train.end());
  EXPECT_EQ(first->text_b, "x2");
  EXPECT_EQ(first->label, 1);  // "yes" after "no"
}

TEST(ClassMetrics, PerClassPrecisionRecallF1AndConfusion) {
  // gold:      0 0 0 1 1 2
  // predicted: 0 0 1 1 2 2
  const ClassMetrics m = class_metrics({0, 0, 0, 1, 1, 2}, {0, 0, 1, 1, 2, 2}, 4);
  EXPECT_DOUBLE_EQ(m.precision[0], 1.0);
  EXPECT_DOUBLE_EQ(m.recall[0], 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(m.f1[0], 0.8);
  EXPECT_DOUBLE_EQ(m.precision[1], 0.5);
  EXPECT_DOUBLE_EQ(m.recall[1], 0.5);
  EXPECT_DOUBLE_EQ(m.precision[2], 0.5);
  EXPECT_DOUBLE_EQ(m.recall[2], 1.0);
  EXPECT_DOUBLE_EQ(m.f1[3], 0.0);  // never gold, never predicted
  EXPECT_EQ(m.support, (std::vector<int64_t>{3, 2, 1, 0}));
  EXPECT_EQ(m.confusion[0], (std::vector<int64_t>{2, 1, 0, 0}));
  EXPECT_EQ(m.confusion[1], (std::vector<int64_t>{0, 1, 1, 0}));
  EXPECT_DOUBLE_EQ(m.macro_f1, (0.8 + 0.5 + 2.0 / 3.0) / 3.0);
}

// Non-UTF-8 text is refused as `ecmoe prepare` refuses it (one validator, data/clean.h), naming
// the file and line, in the header as in the rows.
TEST(GlueTsv, NonUtf8IsAnErrorNamingFileAndLine) {
  TempDir dir("ft-utf8");
  write_text(dir / "latin1.tsv", "sentence\tlabel\ngood one\t1\ncaf\xe9 au lait\t0\n");
  const std::string row = error_of([&] { read_glue_tsv(dir / "latin1.tsv", glue_layout("sst2")); });
  EXPECT_NE(row.find(dir / "latin1.tsv:3: not UTF-8 text"), std::string::npos) << row;
  write_text(dir / "header.tsv", "sent\xffnce\tlabel\ngood one\t1\n");
  const std::string header =
      error_of([&] { read_glue_tsv(dir / "header.tsv", glue_layout("sst2")); });
  EXPECT_NE(header.find(dir / "header.tsv:1: not UTF-8 text"), std::string::npos) << header;
  write_text(dir / "fine.tsv", "sentence\tlabel\ncaf\xc3\xa9 au lait\t0\n");
  EXPECT_EQ(read_glue_tsv(dir / "fine.tsv", glue_layout("sst2")).size(), 1u);
}

TEST(TaskFormats, CsvHandlesQuotesNewlinesAndByteOrderMark) {
  const auto r = parse_csv(
      "\xEF\xBB\xBF\"1\",\"a \"\"quoted\"\" word,\nnext line \n\"\n-1,plain\n\n", "x.csv");
  ASSERT_EQ(r.size(), 2u);
  ASSERT_EQ(r[0].size(), 2u);
  EXPECT_EQ(r[0][0], "1");
  EXPECT_EQ(r[0][1], "a \"quoted\" word,\nnext line \n");
  EXPECT_EQ(r[1][0], "-1");
  EXPECT_EQ(r[1][1], "plain");
  EXPECT_NE(error_of([] { parse_csv("\"1\",\"open\n", "x.csv"); }).find("x.csv:1: unterminated"),
            std::string::npos);
}

TEST(TaskFormats, EmailBodyDropsHeaders) {
  EXPECT_EQ(*email_body("From: a@b\nSubject: hi\n\nHello there.\n\nBye."), "Hello there.\n\nBye.");
  EXPECT_EQ(*email_body("From: a@b\r\n\r\nBody"), "Body");
  EXPECT_FALSE(email_body("From: a@b\nno body"));
}

TEST(TaskFormats, SupersenseLineGivesLexicographerFileAndGloss) {
  const auto s = supersense_line(
      "00001740 03 n 01 entity 0 003 ~ 00001930 n 0000 | that which is perceived to exist  ");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->lex_file, 3);
  EXPECT_EQ(lexicographer_files()[s->lex_file], "noun.Tops");
  EXPECT_EQ(s->gloss, "that which is perceived to exist");
  EXPECT_FALSE(supersense_line("  1 This software and database is being provided"));
  EXPECT_FALSE(supersense_line("00001740 77 n 01 entity 0 000 | out of range"));
  EXPECT_EQ(lexicographer_files().size(), 45u);
}

TEST(BuiltinTasks, PolaritySpamAndSupersenseFromWrittenFiles) {
  TempDir dir("ft-builtin");
  std::string csv = "\xEF\xBB\xBF";
  for (int i = 0; i < 40; ++i)
    csv += std::string(i % 2 ? "\"1\"" : "\"-1\"") + ",\"review " + std::to_string(i) + " \n\"\n";
  write_text(dir / "p.csv", csv);
  const TaskData p = polarity_task(dir / "p.csv", "polarity", 4);
  EXPECT_EQ(p.test.size(), 4u);
  EXPECT_EQ(p.dev.size(), 4u);
  EXPECT_EQ(p.train.size(), 32u);
  for (const auto* split : {&p.train, &p.dev, &p.test})
    for (const Example& e : *split)
      EXPECT_EQ(e.label, std::stoi(e.text_a.substr(7)) % 2) << e.text_a;
  write_text(dir / "bad.csv", "\"1\",\"fine\"\n\"0\",\"zero is no label here\"\n");
  EXPECT_NE(error_of([&] {
              polarity_task(dir / "bad.csv", "polarity", 0);
            }).find("record 2: unknown label '0'"),
            std::string::npos);

  for (int i = 0; i < 1000; ++i) {
    const bool spam = i % 4 == 0;
    const std::string group = spam ? "spam-1" : "easy-ham-1";
    nlohmann::json j;
    j["group"] = group;
    j["text"] = "From: x@y\nSubject: " + std::to_string(i) + "\n\n" +
                (spam ? "Buy now " : "Meeting notes ") + std::to_string(i);
    write_text(dir / ("spam/" + group + "/" + std::to_string(10000 + i) + ".json"), j.dump());
  }
  const TaskData s = spam_task(dir / "spam");
  EXPECT_EQ(s.test.size() + s.dev.size() + s.train.size(), 1000u);
  for (const Example& e : s.test) {
    EXPECT_EQ(e.text_a.find("From:"), std::string::npos);
    EXPECT_EQ(e.label, e.text_a.rfind("Buy", 0) == 0 ? 1 : 0);
  }

  std::string noun = "  1 license header line\n";
  for (int i = 0; i < 2000; ++i)
    noun += std::to_string(10000000 + i) + (i % 2 ? " 05" : " 06") + " n 01 word 0 000 | gloss " +
            std::to_string(i) + "\n";
  write_text(dir / "dict/data.noun", noun);
  for (const char* part : {"verb", "adj", "adv"})
    write_text(dir / (std::string("dict/data.") + part), "  1 license\n");
  const TaskData ss = supersense_task(dir / "dict");
  EXPECT_EQ(ss.labels.size(), 45u);
  EXPECT_EQ(ss.test.size() + ss.dev.size() + ss.train.size(), 2000u);
  for (const Example& e : ss.dev) EXPECT_EQ(e.label, std::stoi(e.text_a.substr(6)) % 2 ? 5 : 6);
}

TEST(ClassMetrics, AccuracyMacroF1AndMajority) {
  const ClassMetrics m = class_metrics({0, 0, 0, 1}, {0, 0, 1, 1}, 3);
  EXPECT_DOUBLE_EQ(m.accuracy, 0.75);
  // class 0: TP 2, gold 3, predicted 2 -> 0.8; class 1: TP 1, gold 1, predicted 2 -> 2/3;
  // class 2 never occurs and is left out of the mean.
  EXPECT_NEAR(m.macro_f1, (0.8 + 2.0 / 3.0) / 2, 1e-12);
  EXPECT_EQ(majority_class({2, 1, 2, 0}, 3), 2);
  EXPECT_EQ(majority_class({1, 0}, 2), 0);  // ties: lowest index
}

}  // namespace
}  // namespace ecmoe::finetune
