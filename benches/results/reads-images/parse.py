import re,glob,statistics,sys,os
d=sys.argv[1]
unit={'ns':1e-3,'µs':1,'us':1,'ms':1e3,'s':1e6}
res={}  # (rep,mode,id)->us
for f in sorted(glob.glob(d+'/*-*-*.txt')):
    b=os.path.basename(f)[:-4]
    kind,rep,mode=b.split('-')
    cur=None
    for line in open(f,errors='replace'):
        m=re.match(r'^(\S+/\S+)\s*(time:.*)?$',line.rstrip())
        if m and not line.startswith(' '):
            cur=m.group(1)
        t=re.search(r'time:\s+\[\S+ \S+ (\S+) (\S+) \S+ \S+\]',line)
        if t and cur:
            res[(int(rep),mode,cur)]=float(t.group(1))*unit[t.group(2)]
            cur=None
ids=sorted({k[2] for k in res})
groups=sorted({i.rsplit('/',1)[0] if not i.startswith('point_read') else i.split('/')[0]+'/'+i.split('/')[2] for i in ids})
reps=sorted({k[0] for k in res})
for g in groups:
    if g.startswith('point_read'):
        o,s=('point_read/ormdb/'+g.split('/')[1],'point_read/sqlite/'+g.split('/')[1])
    else:
        o,s=g+'/ormdb',g+'/sqlite'
    for mode in ['off','on']:
        rs=[];os_=[];ss=[]
        for r in reps:
            if (r,mode,o) in res and (r,mode,s) in res:
                rs.append(res[(r,mode,o)]/res[(r,mode,s)]); os_.append(res[(r,mode,o)]); ss.append(res[(r,mode,s)])
        if rs:
            print(f"{g:32s} images {mode:3s} ormdb {statistics.median(os_):9.2f} us  sqlite {statistics.median(ss):9.2f} us  ratio(ormdb time/sqlite time) median {statistics.median(rs):.2f}  per rep {', '.join(f'{x:.2f}' for x in rs)}")
