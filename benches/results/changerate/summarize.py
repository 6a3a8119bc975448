import sys,re,statistics as st
rows=[]
cur=None
for line in open(sys.argv[1]):
    if line.startswith('==='):
        m=re.search(r'rep=(\d+) bin=(\S+) args=(.*?) (\d\d:\d\d:\d\d) load=(\S+)',line)
        cur=dict(rep=m[1],bin=m[2],args=m[3],time=m[4],load=float(m[5]))
    elif line.startswith('RESULT'):
        d=dict(cur); d['id']=line.split()[1]
        for k,v in re.findall(r'(\w+)=([\d.]+)',line): d[k]=float(v)
        rows.append(d)
    elif 'COST' in line and rows:
        for k,v in re.findall(r'(\w+)=([\d.]+)',line): rows[-1]['cost_'+k]=float(v)
keys=['achieved_per_s','p50_us','p95_us','p99_us','max_us','commit_p50_us','commit_p99_us','lag_notices','gaps','overflows','events_per_s','messages','cpu_us','switches','cost_embedding_process_cpu_us','cost_server_cpu_us','cost_client_cpu_us','load']
groups={}
for r in rows: groups.setdefault((r['id'],r['bin']),[]).append(r)
for (i,b),rs in groups.items():
    out=[]
    for k in keys:
        vals=[r[k] for r in rs if k in r]
        if vals: out.append(f"{k}={st.median(vals):.1f} ({', '.join(f'{v:.0f}' if v>=10 else f'{v:.1f}' for v in vals)})")
    print(f"{i} [{b}] n={len(rs)}\n   "+"\n   ".join(out))
