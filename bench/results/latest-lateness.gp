set terminal pngcairo size 900,560 noenhanced
set output 'bench/results/latest-lateness.png'
set title 'Lateness: received − due'
set xlabel 'ms late (log scale; under 0.01 drawn at 0.01)'
set ylabel 'messages delivered by then (%)'
set logscale x
set grid
set key bottom right
plot 'bench/results/latest-lateness.dat' using ($2 < 0.01 ? 0.01 : $2):1 with lines linewidth 2 title 'chime always (fsync before ack, group commit)', 'bench/results/latest-lateness.dat' using ($3 < 0.01 ? 0.01 : $3):1 with lines linewidth 2 title 'beanstalkd -f 50 (fsync at most every 50 ms, its default)', 'bench/results/latest-lateness.dat' using ($4 < 0.01 ? 0.01 : $4):1 with lines linewidth 2 title 'chime beanstalkd default (journal synced before each answer)', 'bench/results/latest-lateness.dat' using ($5 < 0.01 ? 0.01 : $5):1 with lines linewidth 2 title 'redis appendfsync everysec'
