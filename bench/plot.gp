# plot.gp - draw msgpipe_bench results (the --csv output) with gnuplot.
#
#   gnuplot -e "sock='socket.csv'; fifo='fifo.csv'; out='docs/performance.png'" \
#           bench/plot.gp
#
# sock: the CSV of the socket build (every transport); fifo (optional): the
# CSV of the FIFO build, from which msgpipe-fifo and rawfifo are drawn too.
# Left: ping-pong p50 round trip by size; right: streaming MiB/s by size.
# Both axes logarithmic.

if (!exists("sock")) sock = 'socket.csv'
if (!exists("fifo")) fifo = ''
if (!exists("out")) out = 'performance.png'

set datafile separator ","
set terminal pngcairo size 1400,560 font "sans,11"
set output out
set multiplot layout 1,2 title "msgpipe\\_bench: msgpipe against raw AF\\_UNIX, nng and ZeroMQ (one machine; medians of 5 interleaved runs per build)"

set logscale xy
set grid xtics ytics mytics
set key top left box opaque
set xtics ("16 B" 16, "64 B" 64, "256 B" 256, "4 KiB" 4096, "64 KiB" 65536, "1 MiB" 1048576)
set pointsize 1.2

# series(f, t, c, m): the "size,value" rows of file f for transport t,
# case c, metric m (awk picks them, so that each series is one line).
series(f, t, c, m) = sprintf("< awk -F, '$1==\"%s\" && $2==\"%s\" && $4==\"%s\" {print $3\",\"$5}' %s", t, c, m, f)
F = (fifo ne '' ? fifo : '/dev/null')

set title "Ping-pong: p50 round trip (lower is better)"
set xlabel "message size"
set ylabel "microseconds"
set xrange [10:100000]
plot series(sock, "raw", "pingpong", "p50_us") using 1:2 with linespoints lw 2 pt 7 dt 2 lc rgb "#444444" title "raw AF\\_UNIX", \
     series(sock, "msgpipe", "pingpong", "p50_us") using 1:2 with linespoints lw 2 pt 5 lc rgb "#1f77b4" title "msgpipe (socket)", \
     series(sock, "nng", "pingpong", "p50_us") using 1:2 with linespoints lw 2 pt 9 lc rgb "#d62728" title "nng pair1 ipc", \
     series(sock, "zmq", "pingpong", "p50_us") using 1:2 with linespoints lw 2 pt 11 lc rgb "#2ca02c" title "ZeroMQ PAIR ipc", \
     series(F, "msgpipe-fifo", "pingpong", "p50_us") using 1:2 with linespoints lw 2 pt 4 lc rgb "#9467bd" title "msgpipe-fifo", \
     series(F, "rawfifo", "pingpong", "p50_us") using 1:2 with linespoints lw 2 pt 6 dt 3 lc rgb "#8c564b" title "raw FIFO"

set title "Streaming: throughput (higher is better)"
set ylabel "MiB/s"
set xrange [40:2000000]
set key bottom right
plot series(sock, "raw", "stream", "mib_per_s") using 1:2 with linespoints lw 2 pt 7 dt 2 lc rgb "#444444" title "raw AF\\_UNIX", \
     series(sock, "msgpipe", "stream", "mib_per_s") using 1:2 with linespoints lw 2 pt 5 lc rgb "#1f77b4" title "msgpipe (socket)", \
     series(sock, "nng", "stream", "mib_per_s") using 1:2 with linespoints lw 2 pt 9 lc rgb "#d62728" title "nng pair1 ipc", \
     series(sock, "zmq", "stream", "mib_per_s") using 1:2 with linespoints lw 2 pt 11 lc rgb "#2ca02c" title "ZeroMQ PAIR ipc", \
     series(F, "msgpipe-fifo", "stream", "mib_per_s") using 1:2 with linespoints lw 2 pt 4 lc rgb "#9467bd" title "msgpipe-fifo", \
     series(F, "rawfifo", "stream", "mib_per_s") using 1:2 with linespoints lw 2 pt 6 dt 3 lc rgb "#8c564b" title "raw FIFO"

unset multiplot
