import re,glob,statistics as st,sys
d=sys.argv[1] if len(sys.argv)>1 else '.'
res={}
for f in sorted(glob.glob(d+'/sql_writes-*-run*.txt')):
    b='before' if '-before-' in f else 'after'
    for l in open(f):
        m=re.match(r'RESULT sql_writes/(\S+) rep=\d+ .*ormdb_us=([\d.]+) sqlite_us=([\d.]+) ratio=([\d.]+) ormdb_cpu_us=([\d.]+) sqlite_cpu_us=([\d.]+) cpu_ratio=([\d.]+).*loadavg=(\S+)',l)
        if m:
            c=m.group(1); v=[float(x) for x in m.groups()[1:8]]
            res.setdefault((c,b),[]).append(v)
print("%-22s %-6s %3s %9s %9s %8s %8s %8s %9s %6s"%("case","build","n","o_wall","l_wall","ratio","o_cpu","l_cpu","cpu_ratio","load"))
for c in ["insert","insert_returning","update","delete","insert_tx","insert_returning_tx","update_tx","delete_tx"]:
    for b in ["before","after"]:
        v=res.get((c,b))
        if not v: continue
        med=lambda i: st.median(x[i] for x in v)
        print("%-22s %-6s %3d %9.2f %9.2f %8.2f %8.2f %8.2f %9.2f %6.1f"%(c,b,len(v),med(0),med(1),med(2),med(3),med(4),med(5),med(6)))
