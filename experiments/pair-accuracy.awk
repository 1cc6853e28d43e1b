# Pairs two searches' candidates.csv by configuration: one row per configuration both
# trained, with its validation accuracy in each and the difference (second - first).
# usage: awk -F, -v a=NAME_A -v b=NAME_B -f experiments/pair-accuracy.awk A.csv B.csv
FNR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
{ acc[FILENAME, $col["config"]] = $col["val_accuracy"]; seen[$col["config"]] = 1 }
END {
  print "config,val_accuracy_" a ",val_accuracy_" b ",difference"
  for (c in seen) {
    x = acc[ARGV[1], c]; y = acc[ARGV[2], c]
    if (x != "" && y != "") printf "%s,%.4f,%.4f,%+.4f\n", c, x, y, y - x
  }
}
