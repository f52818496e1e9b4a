# An allocation-heavy ruby workload for crates/preload/tests/real_programs.rs
# (deterministic: its own PRNG), compared with and without LD_PRELOAD.
seed = 4242
rnd = lambda { |n| seed = (seed * 1103515245 + 12345) % 2147483648; seed % n }
word = lambda { |len| Array.new(len) { (97 + rnd.(26)).chr }.join }
h = {}
60_000.times { |i| (h[word.(3 + rnd.(8))] ||= +"") << "#{i}," }
puts "hash #{h.size} #{h.keys.sort.first(500).join.sum}"
h.keys.each_with_index { |k, i| h.delete(k) if i.odd? }
puts "after delete #{h.size} #{h.values.map(&:size).sum}"
lines = Array.new(20_000) { |i| format("%06d %s %.3f", i, Array.new(3 + rnd.(10)) { word.(2 + rnd.(7)) }.join(" "), rnd.(100000) / 7.0) }
text = lines.join("\n")
toks = text.split(/\s+/)
puts "text #{text.size} #{toks.size} #{toks.first(1000).map(&:reverse).join.sum}"
puts "gsub #{text.gsub(/([aeiou])([^aeiou\s]+)/) { $2.upcase + $1 }.sum}"
puts "scan #{text.scan(/(\w)\1/).size} #{lines.map { |l| l =~ /^(\d+) (\w+)/ ? $1.to_i % 97 + $2.size : 0 }.sum}"
nums = Array.new(200_000) { rnd.(1_000_000) }.sort
puts "sort #{nums[0]} #{nums[nums.size / 2]} #{nums[-1]}"
acc = 0
8.times do |r|
  recs = Array.new(5000) { |i| { id: i, name: word.(6), tags: Array.new(rnd.(6)) { word.(3) }, meta: { r: r, s: rnd.(1000) } } }
  by_tag = Hash.new { |hh, k| hh[k] = [] }
  recs.each { |rec| rec[:tags].each { |t| by_tag[t] << rec[:id] } }
  acc += by_tag.size + recs.last[:meta][:s]
end
puts "nested #{acc}"
puts "done"
