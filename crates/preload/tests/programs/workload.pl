#!/usr/bin/perl
# An allocation-heavy perl workload for crates/preload/tests/real_programs.rs:
# hashes of many keys grown and shrunk, string building and splitting,
# regexes with captures and substitutions, sorting, nested structures and
# closures. Deterministic (its own PRNG; keys printed sorted), so its output
# can be compared byte for byte between runs with and without LD_PRELOAD.
use strict;
use warnings;

my $scale = shift // 1;
my $seed = 12345;
sub rnd {    # xorshift32
    my ($n) = @_;
    $seed ^= ($seed << 13) & 0xffffffff;
    $seed ^= $seed >> 17;
    $seed ^= ($seed << 5) & 0xffffffff;
    return $seed % $n;
}
my @letters = ('a' .. 'z');
sub word {
    my ($len) = @_;
    return join '', map { $letters[rnd(26)] } 1 .. $len;
}
sub digest {
    my $h = 0;
    for my $s (@_) {
        $h = ($h * 131 + unpack('%32C*', $s) + length $s) % 4294967291;
    }
    return $h;
}

# 1. A big hash: insert, update, delete half, grow again.
my %h;
for my $i (1 .. 40_000 * $scale) {
    my $k = word(3 + rnd(10));
    $h{$k} .= "$i,";
}
my @keys = sort keys %h;
print "hash: ", scalar(@keys), " keys, digest ", digest(@keys[0 .. 999]), "\n";
for my $i (0 .. $#keys) {
    delete $h{ $keys[$i] } if $i % 2;
}
$h{ word(12) } = 'x' x rnd(500) for 1 .. 15_000;
my $total = 0;
$total += length $h{$_} for keys %h;
print "hash after churn: ", scalar(keys %h), " keys, $total value bytes\n";
undef %h;

# 2. Strings: build, split, join, reverse, sprintf, substr.
my @lines;
for my $i (1 .. 12_000 * $scale) {
    my @w = map { word(2 + rnd(8)) } 1 .. 3 + rnd(12);
    push @lines, sprintf("%06d %s %.3f", $i, join(' ', @w), rnd(100000) / 7);
}
my $text = join "\n", @lines;
my @split = split /\s+/, $text;
print "text: ", length($text), " bytes, ", scalar(@split), " tokens\n";
my $rev = join ' ', map { scalar reverse $_ } @split[0 .. 9999];
print "reversed digest ", digest($rev), "\n";
my $big = '';
$big .= substr($text, rnd(length $text), 50) for 1 .. 50_000;
print "substr concat ", length($big), " digest ", digest($big), "\n";

# 3. Regexes: matches with captures, global substitution, tr, split on regex.
my ($vowels, $pairs, $nums) = (0, 0, 0);
for my $l (@lines) {
    $vowels += () = $l =~ /[aeiou]/g;
    $pairs++ while $l =~ /(\w)\1/g;
    if ($l =~ /^(\d+) (\w+).*?([\d.]+)$/) { $nums += $1 % 97 + length($2) + int $3 }
}
print "regex: $vowels vowels, $pairs doubled letters, $nums\n";
(my $subst = $text) =~ s/([aeiou])([^aeiou\s]+)/\U$2\E$1/g;
print "s///g digest ", digest($subst), "\n";
(my $tr = $text) =~ tr/a-m/n-z/;
my @fields = split /[\d.]+/, $tr;
print "tr+split: ", scalar(@fields), " fields, digest ", digest(@fields[0 .. 999]), "\n";

# 4. Sorting: numeric, by several keys, Schwartzian transform.
my @nums = map { rnd(1_000_000) } 1 .. 100_000 * $scale;
my @sorted = sort { $a <=> $b } @nums;
print "sort: min $sorted[0] median $sorted[$#sorted / 2] max $sorted[-1]\n";
my @st = map { $_->[1] } sort { $a->[0] cmp $b->[0] or $a->[1] cmp $b->[1] }
  map { [ lc(substr($_, 7, 5)), $_ ] } @lines;
print "schwartzian digest ", digest(@st[0 .. 999]), "\n";

# 5. Nested structures and closures, built and torn down repeatedly.
my $acc = 0;
for my $round (1 .. 6 * $scale) {
    my @records;
    for my $i (1 .. 4000) {
        push @records, {
            id   => $i,
            name => word(6),
            tags => [ map { word(3) } 1 .. rnd(6) ],
            meta => { round => $round, score => rnd(1000), note => 'n' x rnd(100) },
        };
    }
    my %by_tag;
    for my $r (@records) {
        push @{ $by_tag{$_} }, $r->{id} for @{ $r->{tags} };
    }
    my @counters = map { my $c = $_; sub { $c += $_[0] } } 1 .. 1000;
    $acc += $_->(rnd(10)) for @counters;
    $acc += scalar(keys %by_tag) + $records[-1]{meta}{score};
}
print "nested: $acc\n";
print "done\n";
