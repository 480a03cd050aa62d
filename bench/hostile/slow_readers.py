"""Four clients that stop reading a 15.5 MB answer: what the server holds for them.

usage (from the repository root): python3 bench/hostile/slow_readers.py BINARY
"""
import subprocess, socket, sys, time
BIN=sys.argv[1]
p=subprocess.Popen([BIN,"serve","--port","0","--log-level","error"],stdout=subprocess.PIPE,stderr=subprocess.DEVNULL,text=True)
h,pt=p.stdout.readline().strip().split("http://")[1].rsplit(":",1); addr=(h,int(pt))
def rss():
    d={}
    for l in open(f"/proc/{p.pid}/status"):
        k,v=l.split(":",1)
        if k in("VmRSS","VmHWM"): d[k]=int(v.split()[0])//1024
    return d["VmRSS"],d["VmHWM"]
time.sleep(0.3); idle=rss()[0]
body=b"["+b",".join([b"[5.1,3.5,1.4,0.2]"]*370000)+b"]"
socks=[]
for i in range(4):
    s=socket.create_connection(addr); s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(b"POST /models/iris/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"%len(body)+body)
    s.recv(100); socks.append(s)
time.sleep(1)
now,peak=rss()
print(f"4 slow readers of a 15.5 MB answer: idle {idle} MiB, now +{now-idle} MiB, peak +{peak-idle} MiB")
p.terminate()
